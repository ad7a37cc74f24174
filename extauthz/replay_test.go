package extauthz_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/extauthz"
	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/replay"
	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/internal/upstream/redisstore"
)

// replica is one tokengate process of a fleet for the DPoP route: its own Authorizer, replay
// cache and Redis connections, the rig's verifier and keys.
func replica(t *testing.T, r *rig, addr string) *bindingRig {
	t.Helper()
	store, err := redisstore.New(redisstore.Options{Addr: addr, Timeout: 200 * time.Millisecond, RetryInterval: time.Minute,
		EncryptionKey: bytes.Repeat([]byte{5}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	b := &bindingRig{rig: r, metrics: metrics.New(), logs: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(b.logs, nil))
	cache := replay.New(0)
	cache.Share(store, replay.KindDPoP, "DPoP", log)
	routes := []extauthz.Route{{Name: "dpop", PathPrefix: "/dpop/", Auth: extauthz.AuthJWT, Providers: []string{"corp"},
		Upstream: extauthz.UpstreamPassthrough, RequireBinding: extauthz.BindingDPoP}}
	b.authz, err = extauthz.New(routes, extauthz.Deps{Verifier: r.verifier, MaxTokenBytes: 8192, Metrics: b.metrics,
		Logger: log, Replay: cache,
		Bindings: map[string]extauthz.Binding{"corp": {Algorithms: []string{"ES256", "RS256"}, ClockSkew: 5 * time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	b.client = serveGRPC(t, extauthz.NewCheckServer(b.authz, nil))
	return b
}

// TestDPoPReplayAcrossReplicas: RFC 9449 §11.1 across a fleet sharing one Redis: a proof replica A
// accepted is refused by replica B, whichever replica sees it first; with Redis down each replica
// still decides alone (its own replays refused, the outage logged once).
func TestDPoPReplayAcrossReplicas(t *testing.T) {
	redis := testkit.StartRedis(t)
	r := newRig(t, 1000)
	a, b := replica(t, r, redis.Addr()), replica(t, r, redis.Addr())
	k, err := jose.GenerateKey("ES256", "client")
	if err != nil {
		t.Fatal(err)
	}
	tok := r.token("es", map[string]any{"cnf": map[string]any{"jkt": thumbprint(t, k)}})
	send := func(on *bindingRig, p string, w want) {
		t.Helper()
		assertDecision(t, on.checkGRPC(t, bindReq{path: "/dpop/orders", auth: "DPoP " + tok, dpop: []string{p}}.grpc()), w)
	}
	for _, tc := range []struct {
		name          string
		first, second *bindingRig
	}{{"A then B", a, b}, {"B then A", b, a}} {
		t.Run(tc.name, func(t *testing.T) {
			p := proof(t, k, tok, nil, nil)
			send(tc.first, p, allow)
			send(tc.second, p, wantDPoPProof)
			send(tc.first, p, wantDPoPProof) // its own replay, from its local cache
		})
	}
	if !strings.Contains(scrapeMetrics(t, b.metrics), `tokengate_binding_refusals_total{reason="dpop_replay"}`) {
		t.Error("the fleet-wide replay was not counted as dpop_replay")
	}

	redis.Kill()
	for range 3 {
		p := proof(t, k, tok, nil, nil)
		send(a, p, allow) // Redis down: fresh proofs still pass
		send(a, p, wantDPoPProof)
		send(b, proof(t, k, tok, nil, nil), allow)
	}
	for name, rep := range map[string]*bindingRig{"A": a, "B": b} {
		if n := strings.Count(rep.logs.String(), "shared store unavailable"); n != 1 {
			t.Errorf("replica %s logged the outage %d times, want once:\n%s", name, n, rep.logs)
		}
	}
}
