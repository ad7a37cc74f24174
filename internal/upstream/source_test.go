package upstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/issuer"
)

// signerFunc is a Signer whose signatures the test decides (failing and panicking ones
// included), publishing jwks.
type signerFunc struct {
	sign func(ctx context.Context, r issuer.MintRequest) (string, time.Time, error)
	jwks []byte
}

func (s signerFunc) Mint(ctx context.Context, r issuer.MintRequest) (string, time.Time, error) {
	return s.sign(ctx, r)
}
func (s signerFunc) PublicJWKS() []byte { return s.jwks }

func newIssuer(t *testing.T, now func() time.Time) *issuer.Issuer {
	t.Helper()
	iss, err := issuer.New(issuer.Config{IssuerURL: "https://tokengate.test", TokenTTL: time.Hour,
		Keys: []issuer.KeyConfig{{Kid: "k1", Alg: "ES256", Generate: true}}}, issuer.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// TestMintSource: concurrent callers with one caller token cause one signature and all get
// that token; another caller is signed for anew; the token refreshes ahead of expiry; a
// failing, panicking or already-expired signature is ErrUnavailable (the cause unwraps) and
// never crashes; the request the issuer gets is the template plus the caller (sub falls back
// to client_id, RFC 9068 §2.2; exp capped by the caller's own); only successes count as
// result "success" in mode "mint".
func TestMintSource(t *testing.T) {
	clk := newClock()
	m := metrics.New()
	c := newTestCache(t, clk, func(o *Options) { o.Metrics = m })
	var calls atomic.Int64
	release := make(chan struct{})
	var mu sync.Mutex
	var got []issuer.MintRequest
	signer := signerFunc{jwks: []byte(`{"keys":[]}`), sign: func(_ context.Context, r issuer.MintRequest) (string, time.Time, error) {
		n := calls.Add(1)
		if n == 1 {
			<-release
		}
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
		return fmt.Sprintf("minted-%d", n), clk.Now().Add(5 * time.Minute), nil
	}}
	tmpl := issuer.MintRequest{Audience: "billing", Scopes: []string{"b", "a"}, TTL: 5 * time.Minute,
		Subject: "ignored", ClientID: "ignored", NotAfter: clk.Now()}
	src := NewMintSource(c, "billing", signer, tmpl)
	callerExp := clk.Now().Add(time.Hour)
	alice := Caller{Subject: "alice", ClientID: "web", Expiry: callerExp, Bearer: "alice-token"}

	var wg sync.WaitGroup
	toks := make([]Token, 50)
	for j := range toks {
		wg.Go(func() { toks[j], _ = src.Token(bg, alice) })
	}
	testkit.WaitFor(t, "mint call", 5*time.Second, 2*time.Millisecond, func() bool { return calls.Load() == 1 })
	close(release)
	wg.Wait()
	for _, tok := range toks {
		if tok.AccessToken != "minted-1" {
			t.Fatalf("token %q", tok.AccessToken)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("mint calls %d", calls.Load())
	}
	want := issuer.MintRequest{Subject: "alice", ClientID: "web", Audience: "billing", Scopes: []string{"b", "a"}, TTL: 5 * time.Minute, NotAfter: callerExp}
	if fmt.Sprint(got[0]) != fmt.Sprint(want) {
		t.Errorf("mint request\n got %+v\nwant %+v", got[0], want)
	}

	// A token without sub (a client's own token): sub is its client_id. Another caller token
	// with the same names is another key: callers never share a minted token.
	if tok, _ := src.Token(bg, Caller{ClientID: "svc", Bearer: "svc-token"}); tok.AccessToken != "minted-2" || got[1].Subject != "svc" || got[1].ClientID != "svc" {
		t.Fatalf("client token: %q %+v", tok.AccessToken, got[1])
	}
	if tok, _ := src.Token(bg, Caller{Subject: "alice", ClientID: "web", Expiry: callerExp, Bearer: "alice-token-2"}); tok.AccessToken != "minted-3" {
		t.Fatalf("second token of alice %q", tok.AccessToken)
	}
	// A client_credentials caller: sub and client_id are its client id, no exp cap.
	if tok, _ := src.Token(bg, Caller{Subject: "m2m", ClientID: "m2m"}); tok.AccessToken != "minted-4" || got[3].Subject != "m2m" || !got[3].NotAfter.IsZero() {
		t.Fatalf("client caller: %q %+v", tok.AccessToken, got[3])
	}

	// Refresh ahead.
	clk.Advance(250 * time.Second) // 83 % of 5 min
	if tok, _ := src.Token(bg, alice); tok.AccessToken != "minted-1" {
		t.Fatalf("refresh ahead served %q", tok.AccessToken)
	}
	idle(t, c, src.key(alice))
	if tok, _ := src.Token(bg, alice); tok.AccessToken != "minted-5" {
		t.Fatalf("after refresh %q", tok.AccessToken)
	}

	boom := errors.New("no signing key")
	failing := []struct {
		name string
		sign func(context.Context, issuer.MintRequest) (string, time.Time, error)
	}{
		{"error", func(context.Context, issuer.MintRequest) (string, time.Time, error) { return "", time.Time{}, boom }},
		{"panic", func(context.Context, issuer.MintRequest) (string, time.Time, error) { panic("bug") }},
		{"empty token", func(context.Context, issuer.MintRequest) (string, time.Time, error) {
			return "", clk.Now().Add(time.Minute), nil
		}},
		{"expired", func(context.Context, issuer.MintRequest) (string, time.Time, error) {
			return "x", clk.Now().Add(-time.Second), nil
		}},
	}
	for _, f := range failing {
		s := NewMintSource(c, "billing", signerFunc{jwks: signer.jwks, sign: f.sign}, issuer.MintRequest{Audience: "other-" + f.name})
		_, err := s.Token(bg, alice)
		var ue *Error
		if !errors.Is(err, ErrUnavailable) || !errors.As(err, &ue) || ue.Mode != ModeMint {
			t.Errorf("%s: %v", f.name, err)
		}
		if f.name == "error" && !errors.Is(err, boom) {
			t.Errorf("error: the cause does not unwrap: %v", err)
		}
	}
	if got := testkit.CounterValue(t, m, "tokengate_upstream_token_requests_total", map[string]string{"route": "billing", "mode": "mint", "result": "success"}); got != 5 {
		t.Fatalf("mint successes counted %v, want 5", got)
	}
}

// TestMintSourceKeys: every key of minted tokens is built here, from the route, the published
// keys, the whole template and the caller, so a reload that changes any of them never serves a
// token minted under the old one; one caller (one Bearer token, or one client id) keeps its key.
func TestMintSourceKeys(t *testing.T) {
	c := newTestCache(t, newClock(), nil)
	jwks := []byte(`{"keys":[{"kid":"a"}]}`)
	tmpl := issuer.MintRequest{Audience: "billing", Scopes: []string{"a", "b"}, TTL: time.Minute, Claims: map[string]any{"tenant": "acme"}}
	caller := Caller{Subject: "alice", ClientID: "web", Bearer: "tok"}
	key := func(route string, jwks []byte, tmpl issuer.MintRequest, c2 Caller) Key {
		return NewMintSource(c, route, signerFunc{jwks: jwks}, tmpl).key(c2)
	}
	k0 := key("r", jwks, tmpl, caller)
	with := func(f func(*issuer.MintRequest)) issuer.MintRequest {
		r := tmpl
		f(&r)
		return r
	}
	differ := []struct {
		name string
		k    Key
	}{
		{"route", key("r2", jwks, tmpl, caller)},
		{"published keys", key("r", []byte(`{"keys":[{"kid":"b"}]}`), tmpl, caller)},
		{"audience", key("r", jwks, with(func(r *issuer.MintRequest) { r.Audience = "orders" }), caller)},
		{"scopes", key("r", jwks, with(func(r *issuer.MintRequest) { r.Scopes = []string{"a"} }), caller)},
		{"scope order", key("r", jwks, with(func(r *issuer.MintRequest) { r.Scopes = []string{"b", "a"} }), caller)},
		{"ttl", key("r", jwks, with(func(r *issuer.MintRequest) { r.TTL = 2 * time.Minute }), caller)},
		{"claims", key("r", jwks, with(func(r *issuer.MintRequest) { r.Claims = map[string]any{"tenant": "other"} }), caller)},
		{"bearer", key("r", jwks, tmpl, Caller{Subject: "alice", ClientID: "web", Bearer: "tok2"})},
		{"client caller", key("r", jwks, tmpl, Caller{Subject: "web", ClientID: "web"})},
		{"field shift", key("r", jwks, with(func(r *issuer.MintRequest) { r.Audience, r.Scopes = "billinga", []string{"b"} }), caller)},
	}
	for _, d := range differ {
		if d.k == k0 {
			t.Errorf("%s: same key", d.name)
		}
	}
	same := []struct {
		name string
		k    Key
	}{
		{"one bearer token, whatever else", key("r", jwks, tmpl, Caller{Bearer: "tok"})},
		{"caller fields in the template", key("r", jwks, with(func(r *issuer.MintRequest) { r.Subject, r.ClientID = "x", "y" }), caller)},
	}
	for _, s := range same {
		if s.k != k0 {
			t.Errorf("%s: another key", s.name)
		}
	}
	if key("r", jwks, tmpl, Caller{ClientID: "a"}) == key("r", jwks, tmpl, Caller{ClientID: "b"}) {
		t.Error("two client ids share a key")
	}
}

// TestMintSourceWithIssuer: with the real issuer, the minted token verifies against the
// published keys with the route's audience and scopes; a reload (a new issuer with other keys,
// a new source) signs anew instead of serving the token of the retired key.
func TestMintSourceWithIssuer(t *testing.T) {
	clk := newClock()
	c := newTestCache(t, clk, nil)
	tmpl := issuer.MintRequest{Audience: "billing", Scopes: []string{"billing.read"}, TTL: 5 * time.Minute}
	caller := Caller{Subject: "alice", ClientID: "web", Expiry: clk.Now().Add(time.Hour), Bearer: "alice-token"}
	var toks []string
	for range 2 { // two configurations, each with its generated key
		iss := newIssuer(t, clk.Now)
		src := NewMintSource(c, "billing", iss, tmpl)
		tok, err := src.Token(bg, caller)
		if err != nil {
			t.Fatal(err)
		}
		if again, _ := src.Token(bg, caller); again != tok {
			t.Fatal("the minted token was not cached")
		}
		ks, _, err := jose.ParseKeySet(iss.PublicJWKS())
		if err != nil {
			t.Fatal(err)
		}
		u, err := jose.Parse(tok.AccessToken, 8192)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := u.Verify(ks, []string{"ES256"})
		if err != nil {
			t.Fatalf("the minted token does not verify against the published keys: %v", err)
		}
		if cl.Subject != "alice" || len(cl.Audience) != 1 || cl.Audience[0] != "billing" || cl.Raw["scope"] != "billing.read" || cl.Raw["client_id"] != "web" {
			t.Errorf("claims %v", cl.Raw)
		}
		toks = append(toks, tok.AccessToken)
	}
	if toks[0] == toks[1] {
		t.Fatal("after the keys changed the token signed by the retired key was served")
	}
}

// TestExchangeSources: a client_credentials route's ExchangeSource exchanges the caller's own
// credentials (the route's settings, the caller's id and secret) and an ErrRejected refusal is
// not ErrUnavailable; the `exchanged` upstream passes on the token the verification obtained
// without a second IdP call, and exchanges itself only for a caller that carries none.
func TestExchangeSources(t *testing.T) {
	i := exchangeIDP(t)
	c := newTestCache(t, newClock(), nil)
	verifier, err := NewExchangeSource(c, "legacy", ClientCredentials{TokenURL: i.url(), ClientID: "route-id", ClientSecret: "route-secret", Scopes: []string{"legacy"}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	up := NewExchangedSource(verifier)

	tok, err := verifier.Token(bg, Caller{Subject: "alice", ClientID: "alice", ClientSecret: "alice-secret"})
	if err != nil || i.n() != 1 {
		t.Fatalf("verify: %v (IdP calls %d)", err, i.n())
	}
	if s := i.last(); s.user != "alice" || s.pass != "alice-secret" || s.form.Get("scope") != "legacy" {
		t.Fatalf("the IdP saw %+v", s)
	}
	if got, err := up.Token(bg, Caller{ClientID: "alice", ClientSecret: "alice-secret", Verified: tok}); err != nil || got != tok || i.n() != 1 {
		t.Fatalf("exchanged: %v %v (IdP calls %d)", got, err, i.n())
	}
	if got, err := up.Token(bg, Caller{ClientID: "bob", ClientSecret: "bob-secret"}); err != nil || got.AccessToken == "" || got == tok || i.n() != 2 {
		t.Fatalf("exchanged without a verified token: %v %v (IdP calls %d)", got, err, i.n())
	}
	_, err = verifier.Token(bg, Caller{ClientID: "alice", ClientSecret: "wrong"})
	if !errors.Is(err, ErrRejected) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("bad secret: %v", err)
	}
	if _, err := up.Token(bg, Caller{}); !errors.Is(err, ErrRejected) || i.n() != 3 {
		t.Fatalf("no credentials: %v (IdP calls %d)", err, i.n())
	}
}

// TestSourceAllowHTTP: a source applies the URL policy it is given (AllowHTTP, each
// configuration's server.allow_http_urls), never the one the process-long Cache was built with:
// without the option, http:// to a non-loopback host is refused whatever the Cache allows.
func TestSourceAllowHTTP(t *testing.T) {
	const plain = "http://idp.example.test/token" // http:// to a non-loopback host
	for _, cacheAllows := range []bool{false, true} {
		c := newTestCache(t, nil, func(o *Options) { o.AllowHTTP = cacheAllows })
		for _, tc := range []struct {
			opts []SourceOption
			ok   bool
		}{
			{nil, false},
			{[]SourceOption{AllowHTTP(true)}, true},
			{[]SourceOption{AllowHTTP(false)}, false},
		} {
			_, errF := NewFetchSource(c, "r", ClientCredentials{TokenURL: plain, ClientID: "gw", ClientSecret: "s"}, tc.opts...)
			_, errE := NewExchangeSource(c, "r", ClientCredentials{TokenURL: plain}, tc.opts...)
			_, errT := NewTokenExchangeSource(c, "r", TokenExchange{TokenURL: plain, ClientID: "gw",
				Auth: ClientSecretAuth{ClientID: "gw", Secret: "s"}, Audience: "orders"}, tc.opts...)
			for mode, err := range map[string]error{"fetch": errF, "exchange": errE, "token_exchange": errT} {
				if (err == nil) != tc.ok {
					t.Errorf("cache AllowHTTP=%v, %d options: %s source error %v, want ok=%v", cacheAllows, len(tc.opts), mode, err, tc.ok)
				}
			}
		}
	}
}

// TestExchangeSourceRefusesClientAuth: an ExchangeSource verifies the caller's own client id and
// secret at the token endpoint (RFC 6749 §2.3.1). A client authentication of tokengate's own
// (an assertion) would be sent with the caller's client id in place of the caller's secret, so
// that the IdP judged tokengate's credentials and every secret the caller sent was accepted:
// NewExchangeSource refuses it.
func TestExchangeSourceRefusesClientAuth(t *testing.T) {
	c := newTestCache(t, nil, nil)
	key, err := jose.GenerateKey("ES256", "gw")
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewExchangeSource(c, "r", ClientCredentials{TokenURL: "https://idp.example.test/token",
		Auth: PrivateKeyJWTAuth{ClientID: "gw", Key: key}})
	if err == nil || src != nil {
		t.Fatalf("NewExchangeSource with Auth = %v, %v; want an error", src, err)
	}
}
