package issuer

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMint covers the `mint` route contract: claims from the request, exp = min(now+TTL,
// NotAfter) in whole seconds, signed by the active key, registered claims never
// replaced, errors for an exp not in the future and for missing sub/aud.
func TestMint(t *testing.T) {
	e := newEnv(t, nil)
	now := e.clock.Now()
	cases := []struct {
		name    string
		r       MintRequest
		wantExp time.Time
		want    map[string]any // claims besides iss, exp, iat, jti
		wantErr string
	}{
		{
			name:    "route token",
			r:       MintRequest{Subject: "alice", ClientID: "web", Audience: "billing", Scopes: []string{"billing.read", "billing.write"}, TTL: 5 * time.Minute},
			wantExp: now.Add(5 * time.Minute),
			want:    map[string]any{"sub": "alice", "client_id": "web", "aud": "billing", "scope": "billing.read billing.write"},
		},
		{
			name:    "capped by the caller's exp",
			r:       MintRequest{Subject: "alice", Audience: "billing", TTL: time.Hour, NotAfter: now.Add(90*time.Second + 700*time.Millisecond)},
			wantExp: now.Add(90 * time.Second),
			want:    map[string]any{"sub": "alice", "aud": "billing"},
		},
		{
			name:    "NotAfter later than TTL",
			r:       MintRequest{Subject: "alice", Audience: "billing", TTL: time.Minute, NotAfter: now.Add(time.Hour)},
			wantExp: now.Add(time.Minute),
			want:    map[string]any{"sub": "alice", "aud": "billing"},
		},
		{
			name:    "issuer TTL by default",
			r:       MintRequest{Subject: "alice", Audience: "billing"},
			wantExp: now.Add(time.Hour),
			want:    map[string]any{"sub": "alice", "aud": "billing"},
		},
		{
			name: "extra claims never replace registered ones",
			r: MintRequest{Subject: "alice", ClientID: "web", Audience: "billing", Scopes: []string{"a"}, Claims: map[string]any{
				"iss": "evil", "sub": "root", "aud": "x", "exp": 9e15, "iat": 1, "jti": "j", "client_id": "c", "scope": "all", "nbf": 1,
				"tenant": "acme"}},
			wantExp: now.Add(time.Hour),
			want:    map[string]any{"sub": "alice", "client_id": "web", "aud": "billing", "scope": "a", "tenant": "acme"},
		},
		{name: "NotAfter now", r: MintRequest{Subject: "a", Audience: "b", NotAfter: now}, wantErr: "expired"},
		{name: "NotAfter within the current second", r: MintRequest{Subject: "a", Audience: "b", NotAfter: now.Add(999 * time.Millisecond)}, wantErr: "expired"},
		{name: "NotAfter past", r: MintRequest{Subject: "a", Audience: "b", NotAfter: now.Add(-time.Hour)}, wantErr: "expired"},
		{name: "no subject", r: MintRequest{Audience: "b"}, wantErr: "subject"},
		{name: "no audience", r: MintRequest{Subject: "a"}, wantErr: "audience"},
		{name: "negative TTL", r: MintRequest{Subject: "a", Audience: "b", TTL: -time.Second}, wantErr: "ttl"},
		{name: "bad scope", r: MintRequest{Subject: "a", Audience: "b", Scopes: []string{"a b"}}, wantErr: "scope"},
		{name: "claims not JSON", r: MintRequest{Subject: "a", Audience: "b", Claims: map[string]any{"c": make(chan int)}}, wantErr: "sign"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, exp, err := e.iss.Mint(t.Context(), tc.r)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !exp.Equal(tc.wantExp) {
				t.Errorf("expiry %v, want %v", exp, tc.wantExp)
			}
			u, c := e.verifyWithServedJWKS(t, tok)
			if kid := u.KeyID(); u.Type() != "at+jwt" || kid != "k1" || kid != e.iss.ActiveKeyID() {
				t.Errorf("header typ %q kid %q", u.Type(), u.KeyID())
			}
			if c.Issuer != e.srv.URL || !c.Expiry.Equal(tc.wantExp) || !c.IssuedAt.Equal(now) || len(c.ID) != 22 {
				t.Errorf("iss %q exp %v iat %v jti %q", c.Issuer, c.Expiry, c.IssuedAt, c.ID)
			}
			got := map[string]any{}
			for k, v := range c.Raw {
				if k != "iss" && k != "exp" && k != "iat" && k != "jti" {
					got[k] = v
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("claims\n got %v\nwant %v", got, tc.want)
			}
		})
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := e.iss.Mint(ctx, MintRequest{Subject: "a", Audience: "b"}); err == nil {
		t.Error("Mint with a cancelled context succeeded")
	}
}

// TestConcurrentUse runs the token endpoint, introspection, JWKS and Mint at once (for -race).
func TestConcurrentUse(t *testing.T) {
	e := newEnv(t, nil)
	var wg sync.WaitGroup
	errs := make(chan string, 200)
	for n := range 8 {
		wg.Go(func() {
			for range 10 {
				tok, _, err := e.iss.Mint(context.Background(), MintRequest{Subject: "u", Audience: "billing"})
				if err != nil {
					errs <- err.Error()
					return
				}
				res := e.do(t, req{path: PathIntrospect, contentType: formCT, basic: basicAuth(rotID, rotNew), body: introspectForm(tok)})
				if !strings.Contains(string(res.body), `"active":true`) {
					errs <- "introspect: " + string(res.body)
				}
				id, secret := svcID, svcSecret
				if n%2 == 1 {
					id, secret = "ghost", "x"
				}
				res = e.do(t, req{contentType: formCT, basic: basicAuth(id, secret), body: form("grant_type", "client_credentials")})
				if res.status != http.StatusOK && res.status != 401 && res.status != 429 {
					errs <- "token: " + string(res.body)
				}
				if res := e.do(t, req{method: http.MethodGet, path: PathJWKS}); res.status != 200 {
					errs <- "jwks"
				}
				e.clock.Advance(time.Millisecond)
			}
		})
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
}

// TestNewValidation: configurations New refuses, each with a message naming the problem.
func TestNewValidation(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no issuer URL", func(c *Config) { c.IssuerURL = "" }, "issuer_url"},
		{"relative issuer URL", func(c *Config) { c.IssuerURL = "/x" }, "issuer_url"},
		{"issuer URL with query", func(c *Config) { c.IssuerURL = "https://a.example/?x=1" }, "query"},
		{"issuer URL with fragment", func(c *Config) { c.IssuerURL = "https://a.example/#f" }, "fragment"},
		{"issuer URL ftp", func(c *Config) { c.IssuerURL = "ftp://a.example" }, "scheme"},
		{"sub-second TTL", func(c *Config) { c.TokenTTL = time.Millisecond }, "token_ttl"},
		{"no keys", func(c *Config) { c.Keys = nil }, "signing_keys"},
		{"duplicate kid", func(c *Config) { c.Keys = []KeyConfig{keyConfig("k1"), keyConfig("k1")} }, "duplicate kid"},
		{"generate and file", func(c *Config) { c.Keys[0].Generate = true }, "exclusive"},
		{"bad PEM", func(c *Config) { c.Keys[0].PEM = []byte("nope") }, "signing_keys[0]"},
		{"wrong alg for key", func(c *Config) { c.Keys[0].Alg = "RS256" }, "signing_keys[0]"},
		{"client without id", func(c *Config) { c.Clients[0].ID = "" }, "client_id required"},
		{"client id with control char", func(c *Config) { c.Clients[0].ID = "a\nb" }, "control"},
		{"duplicate client", func(c *Config) { c.Clients[1].ID = svcID }, "duplicate client_id"},
		{"client without secret", func(c *Config) { c.Clients[0].SecretHashes = nil }, "secret"},
		{"client without audience", func(c *Config) { c.Clients[0].Audiences = nil }, "audience"},
		{"empty audience", func(c *Config) { c.Clients[0].Audiences = []string{""} }, "audience"},
		{"bad scope", func(c *Config) { c.Clients[0].Scopes = []string{"a b"} }, "scope token"},
		{"default scope not allowed", func(c *Config) { c.Clients[0].DefaultScopes = []string{"root"} }, "default_scopes"},
		{"client TTL too small", func(c *Config) { c.Clients[0].TokenTTL = time.Millisecond }, "token_ttl"},
		{"unknown signing key", func(c *Config) { c.Clients[3].SigningKey = "k9" }, "signing_key"},
		{"reserved claim", func(c *Config) { c.Clients[0].Claims = map[string]any{"sub": "x"} }, "cannot be overridden"},
		{"claim not JSON", func(c *Config) { c.Clients[0].Claims = map[string]any{"f": func() {}} }, "JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("https://tg.example.com")
			tc.mutate(&cfg)
			_, err := New(cfg, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	// Static claims are frozen: changing the caller's map after New changes nothing.
	cfg := testConfig("https://tg.example.com")
	tags := []any{"a"}
	cfg.Clients[0].Claims = map[string]any{"tags": tags}
	iss, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tags[0] = "changed"
	cfg.Clients[0].Claims["new"] = 1
	if b, _ := json.Marshal(iss.clients[svcID].claims); string(b) != `{"tags":["a"]}` {
		t.Errorf("claims not frozen: %s", b)
	}
}

// TestReloadKeepsGeneratedKeys: an issuer built with Previous keeps the generated keys whose kid
// and alg did not change (tokens they signed keep verifying after a reload); a changed alg makes
// a new key. (The failure limiter survives a reload by being shared: Options.Limiter, see
// TestSharedLimiterSurvivesReload.)
func TestReloadKeepsGeneratedKeys(t *testing.T) {
	cfg := Config{IssuerURL: "https://issuer.test", Keys: []KeyConfig{{Kid: "dev", Alg: "ES256", Generate: true}},
		Clients: []Client{{ID: "c", SecretHashes: [][32]byte{DigestSecret("s")}, Audiences: []string{"a"}}}}
	first, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	same, err := New(cfg, Options{Previous: first})
	if err != nil {
		t.Fatal(err)
	}
	if string(same.PublicJWKS()) != string(first.PublicJWKS()) {
		t.Fatal("a reload with the same kid and alg generated a new key")
	}
	cfg.Keys[0].Alg = "EdDSA"
	changed, err := New(cfg, Options{Previous: first})
	if err != nil {
		t.Fatal(err)
	}
	if string(changed.PublicJWKS()) == string(first.PublicJWKS()) {
		t.Fatal("a changed alg kept the old key")
	}
	if fresh, _ := New(Config{IssuerURL: cfg.IssuerURL, Keys: []KeyConfig{{Kid: "dev", Alg: "ES256", Generate: true}}, Clients: cfg.Clients}, Options{}); string(fresh.PublicJWKS()) == string(first.PublicJWKS()) {
		t.Fatal("without Previous a new key must be generated")
	}
}
