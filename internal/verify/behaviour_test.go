package verify

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/jwks"
	"github.com/tokengate/tokengate/internal/jwks/jwkstest"
	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/testkit"
)

func TestNewRefusesBadProviders(t *testing.T) {
	srvURL := "https://idp.example.com/jwks"
	good := Provider{Name: "corp", Issuer: corpIssuer, JWKSURI: srvURL, Audiences: []string{corpAud}}
	mod := func(f func(p *Provider)) []Provider { p := good; f(&p); return []Provider{p} }
	tests := []struct {
		name      string
		providers []Provider
	}{
		{"no name", mod(func(p *Provider) { p.Name = "" })},
		{"no issuer", mod(func(p *Provider) { p.Issuer = "" })},
		{"no key source", mod(func(p *Provider) { p.JWKSURI = "" })},
		{"jwks_uri and discovery", mod(func(p *Provider) { p.Discovery = true })},
		{"jwks_uri and static keys", mod(func(p *Provider) { p.StaticJWKS = []byte(`{"keys":[]}`) })},
		{"remote without audiences", mod(func(p *Provider) { p.Audiences = nil })},
		{"empty audience", mod(func(p *Provider) { p.Audiences = []string{""} })},
		{"HS256 allowed", mod(func(p *Provider) { p.Algorithms = []string{"HS256"} })},
		{"none allowed", mod(func(p *Provider) { p.Algorithms = []string{"none"} })},
		{"negative skew", mod(func(p *Provider) { p.ClockSkew = -time.Second })},
		{"plain http to a remote host", mod(func(p *Provider) { p.JWKSURI = "http://idp.example.com/jwks" })},
		{"static set without usable keys", mod(func(p *Provider) { p.JWKSURI = ""; p.StaticJWKS = []byte(`{"keys":[]}`) })},
		{"duplicate names", []Provider{good, good}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(context.Background(), Options{Providers: tt.providers})
			if err == nil {
				v.Close()
				t.Fatal("accepted")
			}
		})
	}
	v, err := New(context.Background(), Options{Providers: mod(func(p *Provider) { p.JWKSURI = "http://idp.example.com/jwks" }), AllowHTTP: true})
	if err != nil {
		t.Fatalf("AllowHTTP: %v", err)
	}
	v.Close()
}

// TestSelfIssuer: the built-in issuer's keys (jose's signing side) verify without HTTP, and a
// static provider accepts only the audiences it is given; without any it accepts no token
// (issue 9, finding 5; docs/issuer.md#minting-for-mint-routes: a token a mint route signed for an upstream
// audience is refused by `self` routes).
func TestSelfIssuer(t *testing.T) {
	sk, err := jose.GenerateKey("ES256", "2026-11")
	if err != nil {
		t.Fatal(err)
	}
	set, err := jose.PublicJWKS([]*jose.SigningKey{sk})
	if err != nil {
		t.Fatal(err)
	}
	const self = "https://tokengate.example.com"
	tests := []struct {
		name      string
		audiences []string
		aud       any // the token's aud; nil: none
		ok        bool
	}{
		{"clients' audience", []string{"gw", "billing"}, "billing", true},
		{"one of an array", []string{"gw", "billing"}, []string{"machines", "gw"}, true},
		{"a mint route's upstream audience", []string{"gw", "billing"}, "machines", false},
		{"array without a listed audience", []string{"gw", "billing"}, []string{"a", "b"}, false},
		{"no aud", []string{"gw", "billing"}, nil, false},
		{"empty aud", []string{"gw", "billing"}, "", false},
		{"no audiences configured: billing", nil, "billing", false},
		{"no audiences configured: array", nil, []string{"a", "b"}, false},
		{"no audiences configured: no aud", nil, nil, false},
		{"empty audience list: machines", []string{}, "machines", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newClock()
			v, err := New(context.Background(), Options{
				Providers: []Provider{{Name: "self", Issuer: self, StaticJWKS: set, RequireTyp: "at+jwt", Audiences: tt.audiences}},
				Now:       clock.Now,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			if m := v.Missing(); len(m) != 0 {
				t.Fatalf("static provider not ready: %q", m)
			}
			now := clock.Now().Unix()
			c := map[string]any{"iss": self, "sub": "svc", "exp": now + 60, "iat": now, "client_id": "svc"}
			if tt.aud != nil {
				c["aud"] = tt.aud
			}
			tok, err := sk.Sign(c, "at+jwt")
			if err != nil {
				t.Fatal(err)
			}
			p, err := v.Verify(context.Background(), tok, []string{"self"})
			if !tt.ok {
				expectError(t, err, KindInvalid, DescAudience)
				return
			}
			if err != nil {
				t.Fatalf("aud %v: %v", tt.aud, err)
			}
			if p.Provider != "self" || p.ClientID != "svc" {
				t.Fatalf("principal %+v", p)
			}
		})
	}
}

// TestDroppedKeys covers RFC 8725 §3.1 (docs/security.md#jose-hardening): weak, private, symmetric and off-curve keys of a remote set
// are never used.
func TestDroppedKeys(t *testing.T) {
	weak, err := jwkstest.NewKeyBits("RS256", "weak", 1024)
	if err != nil {
		t.Fatal(err)
	}
	priv := jwkstest.MustKey("ES256", "priv")
	off := jwkstest.MustKey("ES256", "offcurve")
	offJWK := off.PublicJWK()
	y, _ := base64.RawURLEncoding.DecodeString(offJWK["y"].(string))
	y[len(y)-1] ^= 1
	offJWK["y"] = base64.RawURLEncoding.EncodeToString(y)
	good := jwkstest.MustKey("ES256", "good")
	noUse := jwkstest.MustKey("ES256", "enc")
	encJWK := noUse.PublicJWK()
	encJWK["use"] = "enc"
	set := jwkstest.Set(good.PublicJWK(), weak.PublicJWK(), priv.PrivateJWK(), offJWK, encJWK,
		map[string]any{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"})
	f := newFixture(t, nil)
	f.ready(t) // the start-up fetch is done: the refresh below is the one that reads set
	f.srv.SetJWKS(set)
	f.clock.Advance(time.Minute) // let the unknown kid "good" refresh
	for _, k := range []*jwkstest.Key{weak, priv, off, noUse} {
		tok := k.Sign(f.claims(), "at+jwt")
		_, err := f.verify(tok)
		expectError(t, err, KindInvalid, DescUnknownKey)
	}
	if _, err := f.verify(good.Sign(f.claims(), "at+jwt")); err != nil {
		t.Fatalf("the usable key of the set: %v", err)
	}
}

// TestUnavailableThenRecovers covers docs/upstream.md#caches: keys never loaded → KindUnavailable (503) and
// Missing lists the provider; once the JWKS answers, the backoff retry loads it.
func TestUnavailableThenRecovers(t *testing.T) {
	// The server fails before the verifier starts: set afterwards, a fast start-up fetch could
	// load the keys first (seen on a loaded machine).
	f := newFixtureWith(t, func(s *jwkstest.Server) { s.SetMode(jwkstest.Status500) }, nil)
	testkit.WaitFor(t, "the failed start-up fetch", 10*time.Second, 5*time.Millisecond, func() bool {
		return testkit.CounterValue(t, f.m, "tokengate_jwks_refresh_total", map[string]string{"provider": "corp", "result": "error"}) >= 1
	})
	tok := f.token("k1", f.claims())
	_, err := f.verify(tok)
	expectError(t, err, KindUnavailable, DescUnavailable)
	if m := f.v.Missing(); !slices.Equal(m, []string{"provider corp: keys not loaded"}) {
		t.Fatalf("Missing = %q", m)
	}
	f.srv.SetMode(jwkstest.OK)
	began := time.Now()
	f.ready(t)
	if took := time.Since(began); took > 4*time.Second {
		t.Fatalf("recovered after %v, beyond the backoff window", took)
	}
	if m := f.v.Missing(); len(m) != 0 {
		t.Fatalf("Missing = %q after recovery", m)
	}
	if _, err := f.verify(tok); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

// TestJWKSDownAfterStart covers docs/upstream.md#caches: once keys loaded, an IdP that fails (closed, 500,
// hanging, garbage, 10 MB, empty set) never turns valid tokens away, and an unknown kid is
// 401, not 503.
func TestJWKSDownAfterStart(t *testing.T) {
	modes := []struct {
		name string
		set  func(*jwkstest.Server)
	}{
		{"closed", func(s *jwkstest.Server) { s.Close() }},
		{"500", func(s *jwkstest.Server) { s.SetMode(jwkstest.Status500) }},
		{"hang", func(s *jwkstest.Server) { s.SetMode(jwkstest.Hang) }},
		{"garbage", func(s *jwkstest.Server) { s.SetMode(jwkstest.Garbage) }},
		{"10 MB", func(s *jwkstest.Server) { s.SetMode(jwkstest.HugeChunked) }},
		{"empty keys", func(s *jwkstest.Server) { s.SetJWKS([]byte(`{"keys":[]}`)) }},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) {
				o.CacheSize = 0 // every Verify checks the signature against the key set
				o.tune = func(j *jwks.Options) { j.FetchTimeout = 500 * time.Millisecond }
			})
			f.ready(t)
			errCount := func() float64 {
				return testkit.CounterValue(t, f.m, "tokengate_jwks_refresh_total", map[string]string{"provider": "corp", "result": "error"})
			}
			before := errCount() // a loaded machine may have timed out the start-up fetch once
			mode.set(f.srv)
			for i := range 3 {
				f.clock.Advance(11 * time.Second)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := f.v.Verify(ctx, jwkstest.MustKey("ES256", "new").Sign(f.claims(), "at+jwt"), []string{"corp"})
				cancel()
				expectError(t, err, KindInvalid, DescUnknownKey)
				if _, err := f.verify(f.token("k1", f.claims())); err != nil {
					t.Fatalf("round %d: valid token refused while the JWKS is down: %v", i, err)
				}
			}
			if got := errCount() - before; got != 3 {
				t.Fatalf("refresh errors = %v, want 3; requests %d; logs:\n%s", got, f.srv.JWKSRequests(), f.logs)
			}
			if m := f.v.Missing(); len(m) != 0 {
				t.Fatalf("Missing = %q: loaded keys count as ready", m)
			}
		})
	}
}

// TestUnknownKidWaitIsBoundedByCtx: with a hanging IdP, an unknown kid costs the caller at most
// its own deadline.
func TestUnknownKidWaitIsBoundedByCtx(t *testing.T) {
	f := newFixture(t, nil)
	f.ready(t)
	f.srv.SetMode(jwkstest.Hang)
	f.clock.Advance(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err := f.v.Verify(ctx, jwkstest.MustKey("ES256", "new").Sign(f.claims(), "at+jwt"), []string{"corp"})
	expectError(t, err, KindInvalid, DescUnknownKey)
	if took := time.Since(began); took > time.Second {
		t.Fatalf("waited %v", took)
	}
}

// TestRotation covers key rotation at the provider (docs/upstream.md#caches).
func TestRotation(t *testing.T) {
	f := newFixture(t, nil)
	f.ready(t)
	k3 := jwkstest.MustKey("ES256", "k3")
	f.srv.SetJWKS(jwkstest.PublicSet(f.keys["k1"], f.keys["k2"], f.keys["r1"], k3))
	f.clock.Advance(10 * time.Second)
	if _, err := f.verify(k3.Sign(f.claims(), "at+jwt")); err != nil {
		t.Fatalf("new kid: %v", err)
	}
	if got := f.srv.JWKSRequests(); got != 2 {
		t.Fatalf("JWKS requests = %d, want 2 (one refresh)", got)
	}
	if _, err := f.verify(f.token("k1", with(f.claims(), "jti", "other"))); err != nil {
		t.Fatalf("old kid still published: %v", err)
	}
}

// TestUnknownKidBursts covers docs/upstream.md#caches: concurrent and sustained random kids cause at most one
// fetch per 10 s window and are all refused.
func TestUnknownKidBursts(t *testing.T) {
	attacker := jwkstest.MustKey("ES256", "x")
	randomToken := func(f *fixture) string {
		return attacker.WithKid(fmt.Sprintf("kid-%d", rand.Uint64()), "").Sign(f.claims(), "at+jwt")
	}
	t.Run("50 concurrent", func(t *testing.T) {
		f := newFixture(t, nil)
		f.ready(t)
		f.srv.SetDelay(50 * time.Millisecond)
		f.clock.Advance(time.Minute)
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for range 50 {
			tok := randomToken(f)
			wg.Go(func() { _, err := f.verify(tok); errs <- err })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			expectError(t, err, KindInvalid, DescUnknownKey)
		}
		if got := f.srv.JWKSRequests(); got != 2 {
			t.Fatalf("JWKS requests = %d, want 2 (start-up + one shared refresh)", got)
		}
	})
	t.Run("1000 over 100 s", func(t *testing.T) {
		f := newFixture(t, nil)
		f.ready(t)
		for range 1000 {
			f.clock.Advance(100 * time.Millisecond)
			_, err := f.verify(randomToken(f))
			expectError(t, err, KindInvalid, DescUnknownKey)
		}
		if got := f.srv.JWKSRequests() - 1; got > 10 {
			t.Fatalf("%d refreshes in 100 s, want at most 10", got)
		}
	})
	t.Run("1000 at once", func(t *testing.T) {
		f := newFixture(t, nil)
		f.ready(t)
		f.clock.Advance(time.Minute)
		for range 1000 {
			_, err := f.verify(randomToken(f))
			expectError(t, err, KindInvalid, DescUnknownKey)
		}
		if got := f.srv.JWKSRequests(); got != 2 {
			t.Fatalf("JWKS requests = %d, want 2", got)
		}
	})
}

// TestProvidersSharingAKid covers RFC 8725 §3.8 (issuer B's iss on a token signed by A's key): the
// token's iss picks the provider before any key lookup, so a kid present at two IdPs is
// checked against its own issuer's key only.
func TestProvidersSharingAKid(t *testing.T) {
	a, b := jwkstest.MustKey("ES256", "shared"), jwkstest.MustKey("ES256", "shared")
	srvA := jwkstest.NewServer(t, jwkstest.PublicSet(a))
	srvB := jwkstest.NewServer(t, jwkstest.PublicSet(b))
	clock := newClock()
	prov := func(name string, srv *jwkstest.Server) Provider {
		return Provider{Name: name, Issuer: "https://" + name + ".example.com", JWKSURI: srv.JWKSURL(), Audiences: []string{corpAud}}
	}
	v, err := New(context.Background(), Options{
		Providers: []Provider{prov("a", srvA), prov("b", srvB)}, Now: clock.Now, CacheSize: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := v.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	claims := func(iss string) map[string]any {
		now := clock.Now().Unix()
		return map[string]any{"iss": "https://" + iss + ".example.com", "aud": corpAud, "exp": now + 60, "sub": iss}
	}
	tests := []struct {
		name     string
		key      *jwkstest.Key
		iss      string
		route    []string
		provider string
		desc     string
	}{
		{"A by A", a, "a", []string{"a", "b"}, "a", ""},
		{"B by B", b, "b", []string{"a", "b"}, "b", ""},
		{"B's iss, A's key", a, "b", []string{"a", "b"}, "", DescSignature},
		{"A's iss, B's key", b, "a", []string{"b", "a"}, "", DescSignature},
		{"A on a route trusting B only", a, "a", []string{"b"}, "", DescIssuer},
		{"no providers", a, "a", nil, "", DescIssuer},
		{"unknown provider name", a, "a", []string{"zzz"}, "", DescIssuer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tt.key.Sign(claims(tt.iss), ""), tt.route)
			if tt.desc != "" {
				expectError(t, err, KindInvalid, tt.desc)
				return
			}
			if err != nil || p.Provider != tt.provider {
				t.Fatalf("p=%+v err=%v", p, err)
			}
		})
	}
	if srvA.JWKSRequests() != 1 || srvB.JWKSRequests() != 1 {
		t.Fatalf("fetches A=%d B=%d: a shared kid must not look like an unknown one", srvA.JWKSRequests(), srvB.JWKSRequests())
	}
}

// TestSameIssuerTwoProviders: two providers may share an issuer (say, with different
// audiences); each candidate is tried in the route's order.
func TestSameIssuerTwoProviders(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		p2 := o.Providers[0]
		p2.Name, p2.Audiences = "corp-billing", []string{"billing"}
		o.Providers = append(o.Providers, p2)
	})
	f.ready(t)
	tok := f.token("k1", with(f.claims(), "aud", "billing"))
	p, err := f.verify(tok, "corp", "corp-billing")
	if err != nil || p.Provider != "corp-billing" {
		t.Fatalf("p=%+v err=%v", p, err)
	}
	_, err = f.verify(f.token("k1", with(f.claims(), "aud", "billing")), "corp")
	expectError(t, err, KindInvalid, DescAudience)
}

func TestVerifiedTokenCache(t *testing.T) {
	hits := func(f *fixture) float64 {
		return testkit.CounterValue(t, f.m, "tokengate_cache_hits_total", map[string]string{"cache": "verified_tokens"})
	}
	misses := func(f *fixture) float64 {
		return testkit.CounterValue(t, f.m, "tokengate_cache_misses_total", map[string]string{"cache": "verified_tokens"})
	}
	t.Run("second verify does no signature work", func(t *testing.T) {
		f := newFixture(t, nil)
		f.ready(t)
		tok := f.token("k1", f.claims())
		p1, err := f.verify(tok)
		if err != nil {
			t.Fatal(err)
		}
		p2, err := f.verify(tok)
		if err != nil {
			t.Fatal(err)
		}
		if p1 != p2 || f.v.signatureChecks.Load() != 1 || hits(f) != 1 || misses(f) != 1 {
			t.Fatalf("same=%v checks=%d hits=%v misses=%v", p1 == p2, f.v.signatureChecks.Load(), hits(f), misses(f))
		}
		keys := f.v.cache.Keys()
		if len(keys) != 1 || keys[0] != sha256Sum(tok) {
			t.Fatal("the cache is not keyed by the token's SHA-256")
		}
	})
	t.Run("an expired cached token is refused", func(t *testing.T) {
		f := newFixture(t, nil)
		f.ready(t)
		tok := f.token("k1", f.claims()) // exp = now+300
		if _, err := f.verify(tok); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(300*time.Second + skew - time.Second)
		if _, err := f.verify(tok); err != nil || f.v.signatureChecks.Load() != 1 {
			t.Fatalf("within exp+skew: err=%v checks=%d", err, f.v.signatureChecks.Load())
		}
		f.clock.Advance(time.Second)
		_, err := f.verify(tok)
		expectError(t, err, KindInvalid, DescExpired)
		if f.v.cache.Len() != 0 {
			t.Fatal("the expired entry was not removed")
		}
	})
	t.Run("a principal of A is not served on a route trusting B", func(t *testing.T) {
		f := newFixture(t, func(o *Options) {
			p2 := o.Providers[0]
			p2.Name, p2.Issuer = "other", "https://other.example.com"
			o.Providers = append(o.Providers, p2)
		})
		f.ready(t)
		tok := f.token("k1", f.claims())
		if _, err := f.verify(tok, "corp"); err != nil {
			t.Fatal(err)
		}
		_, err := f.verify(tok, "other")
		expectError(t, err, KindInvalid, DescIssuer)
		if p, err := f.verify(tok, "other", "corp"); err != nil || p.Provider != "corp" {
			t.Fatalf("p=%+v err=%v", p, err)
		}
	})
	t.Run("refused tokens are not cached", func(t *testing.T) {
		f := newFixture(t, nil)
		f.ready(t)
		tok := f.token("k1", with(f.claims(), "aud", "x"))
		for range 2 {
			_, err := f.verify(tok)
			expectError(t, err, KindInvalid, DescAudience)
		}
		if f.v.cache.Len() != 0 || f.v.signatureChecks.Load() != 2 {
			t.Fatal("a refused token was cached")
		}
	})
	t.Run("disabled", func(t *testing.T) {
		f := newFixture(t, func(o *Options) { o.CacheSize = 0 })
		f.ready(t)
		tok := f.token("k1", f.claims())
		for range 2 {
			if _, err := f.verify(tok); err != nil {
				t.Fatal(err)
			}
		}
		if f.v.signatureChecks.Load() != 2 {
			t.Fatal("cache disabled but a signature check was skipped")
		}
	})
	t.Run("bounded", func(t *testing.T) {
		f := newFixture(t, func(o *Options) { o.CacheSize = 3 })
		f.ready(t)
		for i := range 10 {
			if _, err := f.verify(f.token("k1", with(f.claims(), "jti", fmt.Sprint(i)))); err != nil {
				t.Fatal(err)
			}
		}
		if f.v.cache.Len() != 3 {
			t.Fatalf("cache holds %d entries, want 3", f.v.cache.Len())
		}
	})
}

func sha256Sum(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// TestReload: a successor keeps the key caches of providers whose key settings are unchanged
// (no refetch, ready at once), and the old Verifier's Close leaves them running.
func TestReload(t *testing.T) {
	f := newFixture(t, nil)
	f.ready(t)
	other := jwkstest.NewServer(t, jwkstest.PublicSet(f.keys["k1"]))
	changed := jwkstest.NewServer(t, jwkstest.PublicSet(f.keys["k1"]))
	otherProv := Provider{Name: "other", Issuer: "https://other.example.com", JWKSURI: other.JWKSURL(), Audiences: []string{"x"}}
	// Generation 2: corp with new audiences (keys unchanged), a new provider.
	p := corpProvider(f.srv)
	p.Audiences = []string{"new-aud"}
	v2, err := New(context.Background(), Options{Providers: []Provider{p, otherProv}, Now: f.clock.Now, Previous: f.v})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	if v2.providers["corp"].src != f.v.providers["corp"].src {
		t.Fatal("corp's key source was not handed over")
	}
	if m := v2.Missing(); len(m) > 1 || (len(m) == 1 && m[0] != "provider other: keys not loaded") {
		t.Fatalf("Missing = %q: corp must be ready at once", m)
	}
	f.v.Close()
	if f.srv.JWKSRequests() != 1 {
		t.Fatalf("corp refetched on reload (%d requests)", f.srv.JWKSRequests())
	}
	if _, err := v2.Verify(context.Background(), f.token("k1", with(f.claims(), "aud", "new-aud")), []string{"corp"}); err != nil {
		t.Fatalf("after reload: %v", err)
	}
	// The handed-over source still refreshes after the old Verifier closed.
	k3 := jwkstest.MustKey("ES256", "k3")
	f.srv.SetJWKS(jwkstest.PublicSet(f.keys["k1"], k3))
	f.clock.Advance(time.Minute)
	if _, err := v2.Verify(context.Background(), k3.Sign(with(f.claims(), "aud", "new-aud"), ""), []string{"corp"}); err != nil {
		t.Fatalf("refresh after the old Verifier closed: %v", err)
	}
	// Generation 3: corp's jwks_uri changes: a new source; other unchanged: kept.
	p.JWKSURI = changed.JWKSURL()
	v3, err := New(context.Background(), Options{Providers: []Provider{p, otherProv}, Now: f.clock.Now, Previous: v2})
	if err != nil {
		t.Fatal(err)
	}
	defer v3.Close()
	if v3.providers["corp"].src == v2.providers["corp"].src || v3.providers["other"].src != v2.providers["other"].src {
		t.Fatal("sources handed over by settings incorrectly")
	}
	if err := v3.WaitReady(context.Background()); err != nil || changed.JWKSRequests() != 1 {
		t.Fatalf("new source: %v, %d requests", err, changed.JWKSRequests())
	}
	// A failing New releases what it acquired.
	_, err = New(context.Background(), Options{Providers: []Provider{otherProv, {Name: "bad"}}, Previous: v3})
	if err == nil {
		t.Fatal("accepted a bad provider")
	}
	_, err = New(context.Background(), Options{Providers: []Provider{otherProv, {Name: "bad", Issuer: "x", JWKSURI: "http://example.com/", Audiences: []string{"a"}}}, Previous: v3})
	if err == nil {
		t.Fatal("accepted a bad provider")
	}
	sh := v3.providers["other"].shared
	sh.mu.Lock()
	refs := sh.refs
	sh.mu.Unlock()
	if refs != 2 { // v2 and v3
		t.Fatalf("refs = %d after failed reloads, want 2", refs)
	}
}

// TestFailedReloadKeepsPreviousSources: when the successor is closed because the rest of the
// reload failed, the previous Verifier, still serving, keeps refreshing its keys.
func TestFailedReloadKeepsPreviousSources(t *testing.T) {
	f := newFixture(t, nil)
	f.ready(t)
	v2, err := New(context.Background(), Options{Providers: []Provider{corpProvider(f.srv)}, Now: f.clock.Now, Previous: f.v})
	if err != nil {
		t.Fatal(err)
	}
	v2.Close()
	v2.Close() // idempotent: must not release twice
	k3 := jwkstest.MustKey("ES256", "k3")
	f.srv.SetJWKS(jwkstest.PublicSet(f.keys["k1"], k3))
	f.clock.Advance(time.Minute)
	if _, err := f.verify(k3.Sign(f.claims(), "")); err != nil {
		t.Fatalf("previous Verifier lost its key refresh: %v", err)
	}
	if f.srv.JWKSRequests() != 2 {
		t.Fatalf("JWKS requests = %d, want 2", f.srv.JWKSRequests())
	}
	// Once both closed, the source is stopped: a new generation cannot share it.
	f.v.Close()
	v3, err := New(context.Background(), Options{Providers: []Provider{corpProvider(f.srv)}, Now: f.clock.Now, Previous: f.v})
	if err != nil {
		t.Fatal(err)
	}
	defer v3.Close()
	if v3.providers["corp"].src == f.v.providers["corp"].src {
		t.Fatal("shared a stopped source")
	}
}

// TestConcurrentUse runs verifications, refreshes and a reload at once (run with -race).
func TestConcurrentUse(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.CacheSize = 16 })
	f.ready(t)
	good := make([]string, 8)
	for i := range good {
		good[i] = f.token("k1", with(f.claims(), "jti", fmt.Sprint(i)))
	}
	attacker := jwkstest.MustKey("ES256", "x")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				if i%10 == 0 {
					f.clock.Advance(time.Second)
				}
				if _, err := f.verify(good[(g+i)%len(good)]); err != nil {
					t.Errorf("valid token refused: %v", err)
					return
				}
				tok := attacker.WithKid(fmt.Sprint("r", g, i), "").Sign(f.claims(), "")
				if _, err := f.verify(tok); err == nil {
					t.Error("attacker token accepted")
					return
				}
			}
		})
	}
	wg.Go(func() {
		v2, err := New(context.Background(), Options{Providers: []Provider{corpProvider(f.srv)}, Now: f.clock.Now, Previous: f.v})
		if err != nil {
			t.Error(err)
			return
		}
		_, _ = v2.Verify(context.Background(), good[0], []string{"corp"})
		_ = v2.Missing()
		v2.Close()
	})
	wg.Wait()
}

func BenchmarkVerify(b *testing.B) {
	for _, bc := range []struct {
		name  string
		kid   string
		cache int
	}{
		{"cached", "r1", 1000},
		{"uncached RS256", "r1", 0},
		{"uncached ES256", "k1", 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFixture(b, func(o *Options) { o.CacheSize = bc.cache; o.Metrics = metrics.New() })
			f.ready(b)
			tok := f.token(bc.kid, f.claims())
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.v.Verify(ctx, tok, []string{"corp"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
