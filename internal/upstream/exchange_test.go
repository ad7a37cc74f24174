package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/testkit"
)

// exchangeIDP accepts two registered clients and answers each its own token; anything else is
// invalid_client (401, as RFC 6749 §5.2 says for Basic).
func exchangeIDP(t *testing.T) *idp {
	i := newIDP(t)
	clients := map[string]string{"alice": "alice-secret", "bob": "bob-secret"}
	i.set(func(w http.ResponseWriter, r *http.Request, n int64) {
		id, secret, ok := r.BasicAuth()
		if !ok || clients[id] == "" || clients[id] != secret {
			w.Header().Set("WWW-Authenticate", `Basic realm="idp"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": "Client authentication failed: " + secret})
			return
		}
		writeJSON(w, 200, map[string]any{"access_token": fmt.Sprintf("%s-tok-%d", id, n), "token_type": "bearer", "expires_in": 300})
	})
	return i
}

func exCC(i *idp, id, secret string) ClientCredentials {
	return ClientCredentials{TokenURL: i.url(), ClientID: id, ClientSecret: secret, Scopes: []string{"legacy"}, Timeout: time.Second}
}

// Traefik Hub's application level: each caller's Basic credentials are exchanged at the IdP.
func TestExchange(t *testing.T) {
	i := exchangeIDP(t)
	clk := newClock()
	log, buf := newLogger()
	m := metrics.New()
	c := newTestCache(t, clk, func(o *Options) { o.Logger = log; o.Metrics = m })

	// Good credentials; two callers never share a token; each is cached.
	ta, err := c.Exchange(bg, "legacy", exCC(i, "alice", "alice-secret"))
	if err != nil || !strings.HasPrefix(ta.AccessToken, "alice-tok-") {
		t.Fatalf("alice: %+v %v", ta, err)
	}
	tb, err := c.Exchange(bg, "legacy", exCC(i, "bob", "bob-secret"))
	if err != nil || !strings.HasPrefix(tb.AccessToken, "bob-tok-") {
		t.Fatalf("bob: %+v %v", tb, err)
	}
	for range 10 {
		if tok, _ := c.Exchange(bg, "legacy", exCC(i, "alice", "alice-secret")); tok != ta {
			t.Fatal("alice's token not cached")
		}
	}
	if i.n() != 2 {
		t.Fatalf("IdP calls %d, want 2", i.n())
	}
	// The exchange key differs from a fetch key with the same credentials.
	if CredentialsKey(ModeExchange, exCC(i, "alice", "alice-secret")) == CredentialsKey(ModeFetch, exCC(i, "alice", "alice-secret")) {
		t.Fatal("exchange and fetch keys collide")
	}

	// Wrong secret: ErrRejected (401), not ErrUnavailable; 20 sequential and 20 concurrent repeats
	// reach the IdP once; alice's cached token is unaffected.
	before := i.n()
	bad := exCC(i, "alice", "wrong-secret")
	_, err = c.Exchange(bg, "legacy", bad)
	if !errors.Is(err, ErrRejected) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("wrong secret: %v", err)
	}
	for range 20 {
		if _, err := c.Exchange(bg, "legacy", bad); !errors.Is(err, ErrRejected) {
			t.Fatalf("repeat: %v", err)
		}
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := c.Exchange(bg, "legacy", bad); !errors.Is(err, ErrRejected) {
				t.Errorf("concurrent repeat: %v", err)
			}
		})
	}
	wg.Wait()
	if got := i.n() - before; got != 1 {
		t.Fatalf("IdP calls for 41 bad attempts = %d, want 1", got)
	}
	if tok, err := c.Exchange(bg, "legacy", exCC(i, "alice", "alice-secret")); err != nil || tok != ta {
		t.Fatalf("alice after the bad attempts: %v", err)
	}
	// Unknown client: rejected too (its own negative entry).
	if _, err := c.Exchange(bg, "legacy", exCC(i, "mallory", "x")); !errors.Is(err, ErrRejected) {
		t.Fatalf("unknown client: %v", err)
	}
	// The negative entry lapses after NegativeTTL (30 s): one more IdP call.
	before = i.n()
	clk.Advance(31 * time.Second)
	_, _ = c.Exchange(bg, "legacy", bad)
	_, _ = c.Exchange(bg, "legacy", bad)
	if i.n() != before+1 {
		t.Fatalf("after the negative TTL: %d calls, want 1", i.n()-before)
	}
	// Empty credentials (a malformed Basic header upstream of us): rejected without an IdP call.
	before = i.n()
	for _, cc := range []ClientCredentials{exCC(i, "", "x"), exCC(i, "alice", "")} {
		if _, err := c.Exchange(bg, "legacy", cc); !errors.Is(err, ErrRejected) {
			t.Fatalf("empty credentials: %v", err)
		}
	}
	if i.n() != before {
		t.Fatal("empty credentials reached the IdP")
	}
	// No caller secret and no token in the logs or error texts; the IdP's description neither.
	logs := buf.String()
	for _, s := range []string{"alice-secret", "bob-secret", "wrong-secret", ta.AccessToken, tb.AccessToken, "Client authentication failed"} {
		if strings.Contains(logs, s) || strings.Contains(err.Error(), s) {
			t.Fatalf("%q leaked: %s", s, logs)
		}
	}
	if !strings.Contains(logs, `"idp_error":"invalid_client"`) {
		t.Fatalf("log lacks the IdP error code: %s", logs)
	}
	if got := testkit.CounterValue(t, m, "tokengate_upstream_token_requests_total", map[string]string{"route": "legacy", "mode": "exchange", "result": "negative_cache"}); got < 20 {
		t.Fatalf("negative cache hits counted %v", got)
	}

	// An IdP outage during exchange is ErrUnavailable (503), not a rejection.
	i.set(func(w http.ResponseWriter, r *http.Request, n int64) { http.Error(w, "down", 500) })
	if _, err := c.Exchange(bg, "legacy", exCC(i, "bob", "other-secret")); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRejected) {
		t.Fatalf("outage: %v", err)
	}
}

func TestMetricsAndHitMiss(t *testing.T) {
	i := newIDP(t)
	m := metrics.New()
	c := newTestCache(t, newClock(), func(o *Options) { o.Metrics = m })
	cc := baseCC(i)
	for range 5 {
		if _, err := c.Fetch(bg, "partner", cc); err != nil {
			t.Fatal(err)
		}
	}
	if got := testkit.CounterValue(t, m, "tokengate_upstream_token_requests_total", map[string]string{"route": "partner", "mode": "fetch", "result": "success"}); got != 1 {
		t.Fatalf("success = %v", got)
	}
	if got := testkit.CounterValue(t, m, "tokengate_cache_hits_total", map[string]string{"cache": "upstream_tokens"}); got != 4 {
		t.Fatalf("hits = %v", got)
	}
	if got := testkit.CounterValue(t, m, "tokengate_cache_misses_total", map[string]string{"cache": "upstream_tokens"}); got != 1 {
		t.Fatalf("misses = %v", got)
	}
	i.set(func(w http.ResponseWriter, r *http.Request, n int64) {
		writeJSON(w, 400, map[string]string{"error": "invalid_client"})
	})
	cc.ClientID = "other"
	_, _ = c.Fetch(bg, "partner", cc)
	if got := testkit.CounterValue(t, m, "tokengate_upstream_token_requests_total", map[string]string{"route": "partner", "mode": "fetch", "result": "rejected"}); got != 1 {
		t.Fatalf("rejected = %v", got)
	}
}

// The cache is bounded by Size.
func TestBounded(t *testing.T) {
	i := newIDP(t)
	c := newTestCache(t, newClock(), func(o *Options) { o.Size = 10 })
	for k := range 50 {
		cc := baseCC(i)
		cc.ClientID = fmt.Sprint("client-", k)
		if _, err := c.Fetch(bg, "r", cc); err != nil {
			t.Fatal(err)
		}
	}
	if c.tokens.Len() != 10 {
		t.Fatalf("entries %d", c.tokens.Len())
	}
}

// BenchmarkFetchCached is the hot path of a `fetch` Check: a cached, fresh token.
func BenchmarkFetchCached(b *testing.B) {
	i := newIDP(b)
	i.set(i.okHandler(3600))
	c := NewCache(Options{})
	defer c.Close()
	cc := ClientCredentials{TokenURL: i.url(), ClientID: "gw", ClientSecret: "gw-secret", Scopes: []string{"orders.read", "orders.write"}, Audience: "https://api.partner.com",
		EndpointParams: map[string][]string{"resource": {"x"}}}
	if _, err := c.Fetch(bg, "partner", cc); err != nil {
		b.Fatal(err)
	}
	src, err := NewFetchSource(c, "partner", cc)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Fetch", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Fetch(bg, "partner", cc); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("FetchSource", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := src.Token(bg, Caller{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	if i.n() != 1 {
		b.Fatalf("IdP calls %d", i.n())
	}
}
