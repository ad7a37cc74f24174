package testenv_test

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/testenv"
)

// dpopKey is a client's DPoP key: proofs are built as RFC 9449 §4.2 describes, signed through
// internal/jose like every JWS of the project.
type dpopKey struct {
	key *jose.SigningKey
	jkt string // RFC 7638 thumbprint: the token's cnf.jkt (RFC 9449 §6.1)
}

func newDPoPKey(t *testing.T) *dpopKey {
	t.Helper()
	k, err := jose.GenerateKey("ES256", "dpop-client")
	if err != nil {
		t.Fatal(err)
	}
	jkt, err := k.Thumbprint()
	if err != nil {
		t.Fatal(err)
	}
	return &dpopKey{key: k, jkt: jkt}
}

// proof signs a proof for method and url (htu, RFC 9449 §4.2) bound to token by ath.
func (k *dpopKey) proof(t *testing.T, method, url, token string) string {
	t.Helper()
	ath := sha256.Sum256([]byte(token))
	p, err := k.key.SignDPoPProof(map[string]any{
		"jti": base64.RawURLEncoding.EncodeToString(randBytes(t, 12)),
		"htm": method, "htu": url, "iat": time.Now().Unix(),
		"ath": base64.RawURLEncoding.EncodeToString(ath[:]),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func randBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// callerToken is a JWT of the fake IdP for the demo's idp provider (aud api://gateway, scope
// echo.read) with the given cnf, or none.
func callerToken(t *testing.T, s *testenv.Stack, cnf map[string]any) string {
	t.Helper()
	c := map[string]any{"sub": "alice", "aud": "api://gateway", "scope": "echo.read"}
	if cnf != nil {
		c["cnf"] = cnf
	}
	tok, err := s.IdP.CallerToken(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestDPoPThroughTheGateway: a DPoP-bound token (RFC 9449) through the stand-in gateway and the
// real gRPC Check: allowed with a good proof, and every refusal with its status, challenges and
// body (RFC 9449 §7.1: invalid_dpop_proof for the proof, invalid_token for the token).
func TestDPoPThroughTheGateway(t *testing.T) {
	s := startStack(t)
	gw := s.Gateway.URL()
	k := newDPoPKey(t)
	tok := callerToken(t, s, map[string]any{"jkt": k.jkt})
	dpop := func(proof string) map[string]string {
		return map[string]string{"Authorization": "DPoP " + tok, "DPoP": proof}
	}

	// Allowed: the upstream gets a JWT tokengate mints (mint) and the caller's own token with
	// its scheme (passthrough).
	r := call(t, gw, "/mint/hello", dpop(k.proof(t, "GET", gw+"/mint/hello", tok)))
	if r.status != http.StatusOK {
		t.Fatalf("mint: status %d: %s", r.status, r.body)
	}
	if a := http.Header(r.echo.Headers).Get("Authorization"); !strings.HasPrefix(a, "Bearer eyJ") || strings.Contains(a, tok) {
		t.Fatalf("mint: the upstream got %q, want a minted JWT", a)
	}
	if got := http.Header(r.echo.Headers).Get("X-Subject"); got != "alice" {
		t.Fatalf("mint: x-subject %q", got)
	}
	r = call(t, gw, "/passthrough/x?q=1", dpop(k.proof(t, "GET", gw+"/passthrough/x", tok)))
	if r.status != http.StatusOK || http.Header(r.echo.Headers).Get("Authorization") != "DPoP "+tok {
		t.Fatalf("passthrough: status %d, upstream Authorization %q: %s", r.status, http.Header(r.echo.Headers).Get("Authorization"), r.body)
	}

	replayed := k.proof(t, "GET", gw+"/mint/once", tok)
	if r := call(t, gw, "/mint/once", dpop(replayed)); r.status != http.StatusOK {
		t.Fatalf("first use of a proof: status %d: %s", r.status, r.body)
	}
	other := newDPoPKey(t)
	const dpopChallenge = `DPoP realm="tokengate", algs="`
	tests := []struct {
		name    string
		hdr     map[string]string
		errCode string
		www     string // prefix of WWW-Authenticate
		wwwHas  string // and a part of it
	}{
		{"replayed proof", dpop(replayed), "invalid_dpop_proof", dpopChallenge, `error="invalid_dpop_proof"`},
		{"DPoP-bound token sent as Bearer", bearer(tok), "invalid_token", dpopChallenge, `Bearer realm="tokengate", error="invalid_token"`},
		{"wrong htu", dpop(k.proof(t, "GET", gw+"/mint/elsewhere", tok)), "invalid_dpop_proof", dpopChallenge, `(htu)`},
		{"wrong htm", dpop(k.proof(t, "POST", gw+"/mint/hello", tok)), "invalid_dpop_proof", dpopChallenge, `(htm)`},
		{"https htu on http", dpop(k.proof(t, "GET", "https"+strings.TrimPrefix(gw, "http")+"/mint/hello", tok)), "invalid_dpop_proof", dpopChallenge, `(htu)`},
		{"no proof", map[string]string{"Authorization": "DPoP " + tok}, "invalid_dpop_proof", dpopChallenge, `error="invalid_dpop_proof"`},
		{"proof of another key", dpop(other.proof(t, "GET", gw+"/mint/hello", tok)), "invalid_token", dpopChallenge, `error="invalid_token"`},
		{"proof for another token", dpop(k.proof(t, "GET", gw+"/mint/hello", tok+"x")), "invalid_dpop_proof", dpopChallenge, `(ath)`},
		{"unbound token with DPoP", map[string]string{"Authorization": "DPoP " + callerToken(t, s, nil),
			"DPoP": k.proof(t, "GET", gw+"/mint/hello", tok)}, "invalid_token", dpopChallenge, `error="invalid_token"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, gw, "/mint/hello", tt.hdr)
			assertDenial(t, r, http.StatusUnauthorized, tt.www+"*", tt.errCode)
			if w := r.header.Get("WWW-Authenticate"); !strings.Contains(w, tt.wwwHas) {
				t.Fatalf("WWW-Authenticate %q lacks %q", w, tt.wwwHas)
			}
		})
	}
}

// tlsClient is an HTTPS client trusting ca, presenting cert when it has one.
func tlsClient(ca *testkit.CA, cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
}

// TestCertificateBoundThroughTheGateway: a certificate-bound token (RFC 8705 §3) through a TLS
// stand-in gateway that sends the client certificate as Envoy does with
// include_peer_certificate: allowed with its certificate, refused with another or none.
func TestCertificateBoundThroughTheGateway(t *testing.T) {
	s := startStack(t)
	// RFC 8705 §2 leaves the client certificate's validation to the deployment (here one CA for
	// the gateway and its clients); the binding is the certificate's hash (§3.1).
	ca := testkit.NewCA(t, "tokengate test CA")
	server := ca.Issue(t, testkit.LeafSpec{CN: "gateway", Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	gw, err := testenv.NewGateway(testenv.GatewayOptions{CheckAddr: s.App.GRPCAddr(), UpstreamURL: s.Echo.URL(),
		Routes: testenv.DemoRoutes, TLS: &tls.Config{Certificates: []tls.Certificate{server.TLS()},
			ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: ca.Pool, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Close)
	alice := ca.Issue(t, testkit.LeafSpec{CN: "alice"})
	mine, x5t := alice.TLS(), alice.X5T()
	another := ca.Issue(t, testkit.LeafSpec{CN: "mallory"}).TLS()
	tok := callerToken(t, s, map[string]any{"x5t#S256": x5t})
	unbound := callerToken(t, s, nil)

	tests := []struct {
		name    string
		cert    *tls.Certificate
		token   string
		status  int
		errCode string
	}{
		{"bound token with its certificate", &mine, tok, http.StatusOK, ""},
		{"bound token with another certificate", &another, tok, http.StatusUnauthorized, "invalid_token"},
		{"bound token without a certificate", nil, tok, http.StatusUnauthorized, "invalid_token"},
		{"unbound token with a certificate", &mine, unbound, http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, gw.URL()+"/mint/hello", nil)
			req.Header.Set("Authorization", "Bearer "+tt.token)
			resp, err := tlsClient(ca, tt.cert).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			r := readResult(t, resp)
			if tt.status == http.StatusOK {
				if r.status != http.StatusOK || !strings.HasPrefix(http.Header(r.echo.Headers).Get("Authorization"), "Bearer eyJ") {
					t.Fatalf("status %d, upstream Authorization %q: %s", r.status, http.Header(r.echo.Headers).Get("Authorization"), r.body)
				}
				return
			}
			// A route that does not offer DPoP challenges with Bearer only (RFC 6750 §3).
			assertDenial(t, r, tt.status, `Bearer realm="tokengate", error="invalid_token"*`, tt.errCode)
		})
	}
}

// TestOpaqueTokenThroughTheGateway: the phantom-token pattern end to end. An opaque token of
// the IdP is introspected (RFC 7662) once and the upstream gets a JWT tokengate mints; a
// refused answer is 401 and an IdP failure 503.
func TestOpaqueTokenThroughTheGateway(t *testing.T) {
	s := startStack(t)
	gw := s.Gateway.URL()
	before := s.IdP.IntrospectionRequests()
	for i := 0; i < 3; i++ {
		r := call(t, gw, "/opaque/hello", bearer(s.OpaqueToken))
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		a := http.Header(r.echo.Headers).Get("Authorization")
		if !strings.HasPrefix(a, "Bearer eyJ") || strings.Contains(a, s.OpaqueToken) {
			t.Fatalf("the upstream got %q, want a minted JWT", a)
		}
		if sub := http.Header(r.echo.Headers).Get("X-Subject"); sub != "demo-user" {
			t.Fatalf("x-subject %q", sub)
		}
	}
	if n := s.IdP.IntrospectionRequests() - before; n != 1 {
		t.Fatalf("%d introspection calls for three Checks with one token, want 1 (cached)", n)
	}
	// A JWT of the IdP on the same route is verified with keys, not introspected.
	if r := call(t, gw, "/opaque/hello", bearer(callerToken(t, s, nil))); r.status != http.StatusOK {
		t.Fatalf("JWT on the opaque route: status %d: %s", r.status, r.body)
	}
	if n := s.IdP.IntrospectionRequests() - before; n != 1 {
		t.Fatalf("a JWT was introspected (%d calls)", n)
	}
	// An opaque token bound to a certificate (cnf in the answer) is bound: without the
	// certificate it is refused.
	x5t := testkit.SelfSigned(t, testkit.LeafSpec{CN: "alice"}).X5T()
	bound := s.IdP.OpaqueToken(map[string]any{"sub": "alice", "scope": "echo.read", "aud": "api://gateway",
		"cnf": map[string]any{"x5t#S256": x5t}})
	assertDenial(t, call(t, gw, "/opaque/hello", bearer(bound)), 401, `Bearer realm="tokengate", error="invalid_token"*`, "invalid_token")

	tests := []struct {
		mode    testenv.IntrospectMode
		status  int
		errCode string
	}{
		{testenv.IntrospectInactive, 401, "invalid_token"},
		{testenv.IntrospectForeignIss, 401, "invalid_token"},
		{testenv.IntrospectForeignAud, 401, "invalid_token"},
		{testenv.IntrospectExpired, 401, "invalid_token"},
		{testenv.Introspect500, 503, "temporarily_unavailable"},
	}
	for _, tt := range tests {
		// A fresh token each time: the answer cache must not hide the mode.
		tok := s.IdP.OpaqueToken(map[string]any{"sub": "bob", "scope": "echo.read", "aud": "api://gateway"})
		s.IdP.SetIntrospection(tt.mode)
		r := call(t, gw, "/opaque/hello", bearer(tok))
		s.IdP.SetIntrospection(testenv.IntrospectNormal)
		www := `Bearer realm="tokengate", error="invalid_token"*`
		if tt.status == 503 {
			www = ""
		}
		assertDenial(t, r, tt.status, www, tt.errCode)
	}
}
