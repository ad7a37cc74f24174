package app_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/app"
	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/testenv"
)

// TestClientAuthRoutes runs routes whose client authenticates to the IdP without a secret, end
// to end through forward-auth against the fake IdP, which verifies each client assertion as a
// real IdP does: a fetch route with private_key_jwt (RFC 7523 §2.2, key file parsed at load),
// a token_exchange route with private_key_jwt (one fresh assertion per exchange, each with its
// own jti), and a token_exchange route with client_assertion_file (read anew for every request;
// missing or empty → 503 and a log line naming the file, never its content).
func TestClientAuthRoutes(t *testing.T) {
	idp, err := testenv.NewIdP("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	keyFile, sa, saFile := assertionClients(t, idp)
	writeSA := func() string { return sa(idp.TokenURL(), "\n") }

	var logs testkit.LogBuffer
	a, err := app.New(context.Background(), app.Options{ConfigPath: writeConfig(t, fmt.Sprintf(`
providers:
  - {name: corp, issuer: "%[1]s", jwks_uri: "%[1]s/.well-known/jwks.json", audiences: ["api://gateway"]}
routes:
  - name: fetch
    match: {path_prefix: /fetch/}
    authenticate: {none: {}}
    upstream:
      fetch:
        token_url: "%[2]s"
        client_id: gateway
        private_key: {file: "%[3]s", alg: ES256, kid: gw-key-1}
  - name: exchange
    match: {path_prefix: /orders/}
    authenticate: {jwt: {providers: [corp]}}
    upstream:
      token_exchange:
        token_url: "%[2]s"
        client_id: gateway
        private_key: {file: "%[3]s", alg: ES256, kid: gw-key-1}
        audience: "https://orders.example.com"
  - name: workload
    match: {path_prefix: /billing/}
    authenticate: {jwt: {providers: [corp]}}
    upstream:
      token_exchange:
        token_url: "%[2]s"
        client_id: "%[4]s"
        client_assertion_file: "%[5]s"
        audience: "https://billing.example.com"
`, idp.URL(), idp.TokenURL(), keyFile, saClient, saFile)), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testenvWaitReady(t, a.HTTPAddr())

	authz := func(path, bearer string) *http.Response {
		t.Helper()
		resp, _ := forwardAuth(t, a.HTTPAddr(), path, bearer)
		return resp
	}
	caller := func(sub string) string {
		t.Helper()
		tok, err := idp.CallerToken(map[string]any{"aud": "api://gateway", "sub": sub})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	checkAssertion := func(c jose.Claims, client string) {
		t.Helper()
		if c.Issuer != client || c.Subject != client || len(c.Audience) != 1 || c.Audience[0] != idp.TokenURL() ||
			c.Expiry.Sub(c.IssuedAt) > 60*time.Second || c.ID == "" {
			t.Errorf("assertion claims: iss %q sub %q aud %q iat %v exp %v jti %q", c.Issuer, c.Subject, c.Audience, c.IssuedAt, c.Expiry, c.ID)
		}
	}

	// fetch with private_key_jwt.
	if resp := authz("/fetch/x", ""); resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Authorization"), "Bearer opaque-gateway-") {
		t.Fatalf("fetch: %d %q", resp.StatusCode, resp.Header.Get("Authorization"))
	}
	// token_exchange with private_key_jwt: two callers, two exchanges, two assertions.
	for _, sub := range []string{"alice", "bob"} {
		if resp := authz("/orders/1", caller(sub)); resp.StatusCode != http.StatusOK ||
			!strings.HasPrefix(resp.Header.Get("Authorization"), "Bearer exchanged-"+sub+"-") {
			t.Fatalf("exchange for %s: %d %q", sub, resp.StatusCode, resp.Header.Get("Authorization"))
		}
	}
	got := idp.Assertions()
	if len(got) != 3 || idp.AssertionRejections() != 0 {
		t.Fatalf("IdP accepted %d assertions and refused %d, want 3 and 0", len(got), idp.AssertionRejections())
	}
	for _, g := range got {
		checkAssertion(g.Claims, "gateway")
	}
	if got[0].Claims.ID == got[1].Claims.ID || got[1].Claims.ID == got[2].Claims.ID || got[0].Claims.ID == got[2].Claims.ID {
		t.Fatal("assertions share a jti")
	}

	// client_assertion_file: read anew for each request.
	var written []string
	for _, sub := range []string{"carol", "dave"} {
		written = append(written, writeSA())
		if resp := authz("/billing/1", caller(sub)); resp.StatusCode != http.StatusOK {
			t.Fatalf("workload exchange for %s: %d", sub, resp.StatusCode)
		}
		got = idp.Assertions()
		if last := got[len(got)-1]; last.Raw != written[len(written)-1] {
			t.Fatalf("the IdP did not receive the file's current content for %s", sub)
		} else {
			checkAssertion(last.Claims, saClient)
		}
	}
	if err := os.Remove(saFile); err != nil {
		t.Fatal(err)
	}
	before := idp.TokenRequests.Load()
	if resp := authz("/billing/1", caller("erin")); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("missing assertion file: %d, want 503", resp.StatusCode)
	}
	if n := idp.TokenRequests.Load() - before; n != 0 {
		t.Fatalf("the IdP was called %d times without an assertion", n)
	}
	out := logs.String()
	if !strings.Contains(out, saFile) {
		t.Fatalf("no log line names the assertion file:\n%s", out)
	}
	for _, w := range written {
		if strings.Contains(out, w) || strings.Contains(out, strings.Split(w, ".")[1]) {
			t.Fatal("the log contains an assertion")
		}
	}
}

// TestClientAuthTLSRoute: a fetch route with tls_client_auth (RFC 8705 §2) gets its token from
// the fake IdP over mutual TLS, the IdP verifying the configured client certificate.
func TestClientAuthTLSRoute(t *testing.T) {
	idp, dir := tlsClientIdP(t)
	a, _, _ := start(t, writeConfig(t, fmt.Sprintf(`
routes:
  - name: fetch
    match: {path_prefix: /fetch/}
    authenticate: {none: {}}
    upstream:
      fetch:
        token_url: "%s"
        client_id: gateway
        tls: {cert_file: "%[2]s/tls.crt", key_file: "%[2]s/tls.key", ca_file: "%[2]s/idp.crt"}
`, idp.TokenURL(), dir)))
	testenvWaitReady(t, a.HTTPAddr())
	resp, err := http.Get("http://" + a.HTTPAddr() + "/authz/fetch/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Authorization"), "Bearer opaque-gateway-") {
		t.Fatalf("fetch: %d %q", resp.StatusCode, resp.Header.Get("Authorization"))
	}
	if cns := idp.TLSClientCNs(); len(cns) != 1 || cns[0] != "tokengate-edge" {
		t.Fatalf("the IdP saw client certificates %v", cns)
	}
}

// tlsClientIdP starts an HTTPS IdP that knows the client "gateway" by the certificate (CN
// tokengate-edge) of a CA the test generates, and writes that certificate and key (tls.crt,
// tls.key) and the IdP's certificate (idp.crt) to the directory it returns.
func tlsClientIdP(t *testing.T) (*testenv.IdP, string) {
	t.Helper()
	ca := testkit.NewCA(t, "client CA")
	idp, err := testenv.NewTLSIdP(nil, ca.Pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	idp.RegisterTLSClient("gateway", "tokengate-edge")
	dir := t.TempDir()
	ca.Issue(t, testkit.LeafSpec{CN: "tokengate-edge"}).Write(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err := os.WriteFile(filepath.Join(dir, "idp.crt"), idp.CertificatePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return idp, dir
}

// TestIntrospectionClientAuth: an opaque-token provider's client authenticates at the
// introspection endpoint (RFC 7662 §2.1) in each way it can at a token endpoint, verified by the
// fake IdP as a real one does: private_key_jwt (the assertion's aud is the introspection
// endpoint), client_assertion_file (read anew; missing → 503 and the IdP not called) and
// tls_client_auth over mutual TLS.
func TestIntrospectionClientAuth(t *testing.T) {
	idp, err := testenv.NewIdP("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	keyFile, sa, saFile := assertionClients(t, idp)
	saTok := sa(idp.IntrospectionURL(), "")
	tlsIdP, tlsDir := tlsClientIdP(t)

	a, _, _ := start(t, writeConfig(t, fmt.Sprintf(`
providers:
  - name: keyjwt
    introspection: {url: "%[1]s", client_id: gateway, private_key: {file: "%[2]s", alg: ES256, kid: gw-key-1}}
  - name: workload
    introspection: {url: "%[1]s", client_id: "%[3]s", client_assertion_file: "%[4]s"}
  - name: mtls
    introspection:
      url: "%[5]s"
      client_id: gateway
      tls: {cert_file: "%[6]s/tls.crt", key_file: "%[6]s/tls.key", ca_file: "%[6]s/idp.crt"}
routes:
  - {name: keyjwt, match: {path_prefix: /keyjwt/}, authenticate: {jwt: {providers: [keyjwt]}}, upstream: {passthrough: {}}}
  - {name: workload, match: {path_prefix: /workload/}, authenticate: {jwt: {providers: [workload]}}, upstream: {passthrough: {}}}
  - {name: mtls, match: {path_prefix: /mtls/}, authenticate: {jwt: {providers: [mtls]}}, upstream: {passthrough: {}}}
`, idp.IntrospectionURL(), keyFile, saClient, saFile, tlsIdP.IntrospectionURL(), tlsDir)))
	testenvWaitReady(t, a.HTTPAddr())
	authz := func(path, bearer string) int {
		t.Helper()
		resp, _ := forwardAuth(t, a.HTTPAddr(), path, bearer)
		return resp.StatusCode
	}

	// private_key_jwt: one fresh assertion for the introspection endpoint.
	if code := authz("/keyjwt/x", idp.OpaqueToken(map[string]any{"sub": "alice"})); code != http.StatusOK {
		t.Fatalf("private_key_jwt introspection: %d", code)
	}
	got := idp.Assertions()
	if len(got) != 1 || idp.AssertionRejections() != 0 {
		t.Fatalf("IdP accepted %d assertions and refused %d, want 1 and 0", len(got), idp.AssertionRejections())
	}
	if c := got[0].Claims; c.Issuer != "gateway" || c.Subject != "gateway" || len(c.Audience) != 1 ||
		c.Audience[0] != idp.IntrospectionURL() || c.ID == "" || c.Expiry.Sub(c.IssuedAt) > 60*time.Second {
		t.Fatalf("assertion claims: iss %q sub %q aud %q jti %q", c.Issuer, c.Subject, c.Audience, c.ID)
	}
	// An unknown opaque token is inactive: 401, still authenticated by a new assertion.
	if code := authz("/keyjwt/x", "opaque-unknown"); code != http.StatusUnauthorized {
		t.Fatalf("inactive token: %d, want 401", code)
	}
	if n := len(idp.Assertions()); n != 2 {
		t.Fatalf("%d assertions after the second introspection, want 2", n)
	}

	// client_assertion_file: the file's content is the assertion.
	if code := authz("/workload/x", idp.OpaqueToken(map[string]any{"sub": "bob"})); code != http.StatusOK {
		t.Fatalf("client_assertion_file introspection: %d", code)
	}
	if got := idp.Assertions(); got[len(got)-1].Raw != saTok {
		t.Fatal("the IdP did not receive the assertion file's content")
	}
	if err := os.Remove(saFile); err != nil {
		t.Fatal(err)
	}
	before := idp.IntrospectionRequests()
	if code := authz("/workload/x", idp.OpaqueToken(map[string]any{"sub": "carol"})); code != http.StatusServiceUnavailable {
		t.Fatalf("missing assertion file: %d, want 503", code)
	}
	if n := idp.IntrospectionRequests() - before; n != 0 {
		t.Fatalf("the introspection endpoint was called %d times without an assertion", n)
	}

	// tls_client_auth: the certificate authenticates the client in the handshake.
	if code := authz("/mtls/x", tlsIdP.OpaqueToken(map[string]any{"sub": "dave"})); code != http.StatusOK {
		t.Fatalf("tls_client_auth introspection: %d", code)
	}
	if cns := tlsIdP.TLSClientCNs(); len(cns) != 1 || cns[0] != "tokengate-edge" {
		t.Fatalf("the IdP saw client certificates %v", cns)
	}
}

// saClient is the client id of the Kubernetes service account that authenticates by a
// projected token (client_assertion_file).
const saClient = "system:serviceaccount:edge:tokengate"

// assertionClients registers two clients at idp that authenticate by client assertion (RFC
// 7523 §2.2): "gateway", whose ES256 key (kid gw-key-1) it writes to keyFile, and saClient,
// whose assertions are projected service-account tokens. sa signs a fresh one for aud, writes it
// to saFile followed by suffix and returns it.
func assertionClients(t *testing.T, idp *testenv.IdP) (keyFile string, sa func(aud, suffix string) string, saFile string) {
	t.Helper()
	dir := t.TempDir()
	key, _ := jose.GenerateKey("ES256", "gw-key-1")
	keyPEM, _ := key.MarshalPEM()
	keyFile = filepath.Join(dir, "client-key.pem")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	jwks, _ := jose.PublicJWKS([]*jose.SigningKey{key})
	if err := idp.RegisterAssertionClient("gateway", jwks, ""); err != nil {
		t.Fatal(err)
	}
	saKey, _ := jose.GenerateKey("RS256", "k8s")
	saJWKS, _ := jose.PublicJWKS([]*jose.SigningKey{saKey})
	if err := idp.RegisterAssertionClient(saClient, saJWKS, ""); err != nil {
		t.Fatal(err)
	}
	saFile = filepath.Join(dir, "sa-token")
	sa = func(aud, suffix string) string {
		t.Helper()
		now := time.Now()
		tok, err := saKey.Sign(map[string]any{"iss": saClient, "sub": saClient, "aud": aud,
			"iat": now.Unix(), "exp": now.Add(50 * time.Second).Unix(), "jti": rand.Text()}, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(saFile, []byte(tok+suffix), 0o600); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	return keyFile, sa, saFile
}
