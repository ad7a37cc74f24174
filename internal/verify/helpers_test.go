package verify

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/jwks/jwkstest"
	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/testkit"
)

const (
	corpIssuer = "https://idp.example.com/"
	corpAud    = "api://gateway"
	skew       = 30 * time.Second
	lifetime   = time.Hour
)

// newClock is a hand-moved clock at a fixed start, the same in every run.
func newClock() *testkit.Clock { return testkit.NewClock(time.Unix(1_800_000_000, 0)) }

// fixture is one provider "corp" served by a real JWKS server on 127.0.0.1.
type fixture struct {
	clock *testkit.Clock
	srv   *jwkstest.Server
	keys  map[string]*jwkstest.Key
	m     *metrics.Metrics
	v     *Verifier
	logs  *testkit.LogBuffer
}

// corpKeys: two ES256 keys (so a token without kid is ambiguous for ES256) and one RS256.
var corpKeys = sync.OnceValue(func() map[string]*jwkstest.Key {
	return map[string]*jwkstest.Key{
		"k1": jwkstest.MustKey("ES256", "k1"),
		"k2": jwkstest.MustKey("ES256", "k2"),
		"r1": jwkstest.MustKey("RS256", "r1"),
	}
})

func corpProvider(srv *jwkstest.Server) Provider {
	return Provider{
		Name: "corp", Issuer: corpIssuer, JWKSURI: srv.JWKSURL(), Audiences: []string{corpAud},
		ClockSkew: skew, MaxTokenLifetime: lifetime,
	}
}

// newFixture starts the JWKS server and a Verifier; mod adjusts the options before New.
func newFixture(t testing.TB, mod func(*Options)) *fixture {
	t.Helper()
	return newFixtureWith(t, nil, mod)
}

// newFixtureWith lets prepare set the JWKS server up before the verifier's start-up fetch,
// which begins at once in the background.
func newFixtureWith(t testing.TB, prepare func(*jwkstest.Server), mod func(*Options)) *fixture {
	t.Helper()
	keys := corpKeys()
	f := &fixture{clock: newClock(), keys: keys, m: metrics.New(), logs: &testkit.LogBuffer{}}
	f.srv = jwkstest.NewServer(t, jwkstest.PublicSet(keys["k1"], keys["k2"], keys["r1"]))
	if prepare != nil {
		prepare(f.srv)
	}
	opts := Options{
		Providers: []Provider{corpProvider(f.srv)},
		CacheSize: 100,
		Metrics:   f.m,
		Now:       f.clock.Now,
		Logger:    slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&opts)
	}
	v, err := New(context.Background(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(v.Close)
	f.v = v
	return f
}

func (f *fixture) ready(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.v.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady: %v (missing %q)", err, f.v.Missing())
	}
}

// claims is a valid claim set for corp at the fixture's time.
func (f *fixture) claims() map[string]any {
	now := f.clock.Now().Unix()
	return map[string]any{
		"iss": corpIssuer, "sub": "alice", "aud": corpAud, "exp": now + 300, "iat": now,
		"jti": "id-1", "client_id": "web", "scope": "read write",
	}
}

func (f *fixture) token(kid string, claims map[string]any) string {
	return f.keys[kid].Sign(claims, "at+jwt")
}

func (f *fixture) verify(token string, providers ...string) (*Principal, error) {
	if providers == nil {
		providers = []string{"corp"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return f.v.Verify(ctx, token, providers)
}

// expectError checks that err is an *Error of the kind and description, and that its text is
// the fixed description only.
func expectError(t testing.TB, err error, kind Kind, desc string, secrets ...string) {
	t.Helper()
	var ve *Error
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v (%T), want *verify.Error", err, err)
	}
	if ve.Kind != kind || ve.Description != desc {
		t.Fatalf("got %v %q (cause %v), want %v %q", ve.Kind, ve.Description, ve.Err, kind, desc)
	}
	if err.Error() != desc {
		t.Fatalf("Error() = %q, want the fixed description", err.Error())
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Fatalf("error text leaks %q", s)
		}
	}
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }
