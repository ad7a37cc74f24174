package envoy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/app"
	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/testkit"
)

// End to end through the real nginx and Caddy of Debian's packages, with the shipped files: the
// compose rig's IdP (idp.yaml) and tokengate (tokengate.yaml, with the environment
// docker-compose.yaml gives the gateway's own tokengate service) on loopback ports, the gateway
// file rendered with those addresses, and an echo upstream that records what reaches it. The
// attacks of issue 9 (items 3, 4, 12, 13) must never reach the upstream without credentials.
//
// To reproduce the issue's set-up, the test adds two routes to the shipped ones: a protected
// /admin/ and, last, a public catch-all (an encoded /%61dmin/ used to fall through to it).

// e2eExtraRoutes are appended to tokengate.yaml's routes.
const e2eExtraRoutes = `
  - name: admin
    match: {path_prefix: "/admin/"}
    authenticate:
      jwt:
        providers: [corp]
        scopes: [echo.read]
    upstream:
      mint: {audience: echo, scopes: [echo.read], ttl: 5m}
  - name: public
    match: {path_prefix: "/"}
    authenticate: {none: {}}
    upstream: {remove: {}}
`

// echoRecorder is the protected upstream: it answers 200 with the request's headers and
// remembers every request URI that reached it.
type echoRecorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	uris []string
}

func newEchoRecorder(t *testing.T) *echoRecorder {
	t.Helper()
	e := &echoRecorder{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.uris = append(e.uris, r.RequestURI)
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"uri": r.RequestURI, "headers": r.Header})
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *echoRecorder) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.uris)
}

// startApp runs tokengate from data (a shipped configuration with its addresses rewritten)
// until the test ends, and waits until it is ready.
func startApp(t *testing.T, data string, env map[string]string) *app.App {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokengate.yaml")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, app.Options{ConfigPath: path, Env: envLookup(env), GRPCAddr: "127.0.0.1:0"})
	if err != nil {
		cancel()
		t.Fatalf("tokengate: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	readyCtx, readyCancel := context.WithTimeout(ctx, 15*time.Second)
	defer readyCancel()
	if err := a.WaitReady(readyCtx); err != nil {
		t.Fatalf("tokengate not ready: %v (missing %v)", err, a.Missing())
	}
	return a
}

// rewriteAll replaces each old by new in s, failing when old is absent (a shipped file that
// changed under the test).
func rewriteAll(t *testing.T, s string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("the shipped file no longer holds %q", pairs[i])
		}
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	return s
}

// e2eRig is the IdP, the gateway's tokengate and the upstream.
type e2eRig struct {
	idpURL    string
	authzAddr string // tokengate's authz_addr, which the gateway asks
	echo      *echoRecorder
}

// startRig starts idp.yaml and tokengate.yaml (with the environment of compose service
// service) on loopback.
func startRig(t *testing.T, service string) *e2eRig {
	t.Helper()
	return startRigKey(t, service, nil)
}

// startRigKey is startRig with the IdP signing with key (instead of a key it makes itself), so
// the test can sign caller tokens with claims the IdP's token endpoint does not issue (cnf).
func startRigKey(t *testing.T, service string, key *jose.SigningKey) *e2eRig {
	t.Helper()
	r := &e2eRig{echo: newEchoRecorder(t)}
	idpHTTP := testkit.FreeAddr(t)
	r.idpURL = "http://" + idpHTTP
	idp := rewriteAll(t, string(readFile(t, "idp.yaml")),
		`http_addr: ":8080"`, `http_addr: "`+idpHTTP+`"`,
		`authz_addr: ":9002"`, `authz_addr: "127.0.0.1:0"`,
		`metrics_addr: ":9090"`, `metrics_addr: "127.0.0.1:0"`,
		"http://idp:8080", r.idpURL)
	if key != nil {
		pemKey, err := key.MarshalPEM()
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "idp-key.pem")
		if err := os.WriteFile(file, pemKey, 0o600); err != nil {
			t.Fatal(err)
		}
		idp = rewriteAll(t, idp, "generate: true", "file: "+file)
	}
	startApp(t, idp, composeEnv(t, "docker-compose.yaml", "idp"))

	r.authzAddr = testkit.FreeAddr(t)
	tg := rewriteAll(t, string(readFile(t, "tokengate.yaml")),
		`http_addr: ":8080"`, `http_addr: "127.0.0.1:0"`,
		`authz_addr: ":9002"`, `authz_addr: "`+r.authzAddr+`"`,
		`metrics_addr: ":9090"`, `metrics_addr: "127.0.0.1:0"`,
		"http://idp:8080", r.idpURL,
		"\ncache:", e2eExtraRoutes+"\ncache:")
	startApp(t, tg, composeEnv(t, "docker-compose.yaml", service))
	return r
}

// idpToken gets a caller token of the rig's IdP (client corp-app, as README.md does).
func (r *e2eRig) idpToken(t *testing.T) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.idpURL+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(idpCallerClient, testComposeSecrets["CORP_APP_SECRET"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.AccessToken == "" {
		t.Fatalf("IdP token: status %d, %v", resp.StatusCode, err)
	}
	return body.AccessToken
}

// rawGet sends a request with the path exactly as given (no client-side cleaning), as an
// attacker would, and returns the status, headers and the upstream's echo (when it answered).
func rawGet(t *testing.T, addr, rawPath string, hdr map[string]string) (int, http.Header, map[string][]string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	b.WriteString("GET " + rawPath + " HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n")
	for k, v := range hdr {
		b.WriteString(k + ": " + v + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", rawPath, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var echo struct {
		Headers map[string][]string `json:"headers"`
	}
	_ = json.Unmarshal(body, &echo)
	return resp.StatusCode, resp.Header, echo.Headers
}

// exerciseAttacks runs the attacks through a gateway at addr.
func exerciseAttacks(t *testing.T, r *e2eRig, addr string, spoof map[string]string) {
	tok := r.idpToken(t)

	t.Run("controls", func(t *testing.T) {
		// The rig works: a public path and a protected one with a token reach the upstream.
		if st, _, _ := rawGet(t, addr, "/none/x", nil); st != http.StatusOK {
			t.Fatalf("/none/x: status %d", st)
		}
		st, _, h := rawGet(t, addr, "/admin/x", map[string]string{"Authorization": "Bearer " + tok})
		if st != http.StatusOK || len(h["Authorization"]) != 1 || h["Authorization"][0] == "Bearer "+tok {
			t.Fatalf("/admin/x with a token: status %d, upstream Authorization %q", st, h["Authorization"])
		}
		if st, _, _ := rawGet(t, addr, "/admin/x", nil); st != http.StatusUnauthorized {
			t.Fatalf("/admin/x without a token: status %d, want 401", st)
		}
	})

	// Each must be refused (400, 401 or 403) without reaching the upstream.
	attacks := []struct {
		name, path string
		hdr        map[string]string
	}{
		{"encoded letter", "/%61dmin/x", nil},
		{"encoded letters", "/%61%64%6D%69%6E/x", nil},
		{"path parameter", "/admin;/x", nil},
		{"dot-dot path parameter", "/x/..;/admin/x", nil},
		{"encoded path parameter", "/admin%3B/x", nil},
		{"encoded slash", "/none%2F..%2Fadmin/x", nil},
		{"backslash", "/none/..%5Cadmin/x", nil},
		{"dot segment", "/none/../admin/x", nil},
		{"spoofed header family", "/admin/x", spoof},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			before := r.echo.count()
			st, _, _ := rawGet(t, addr, a.path, a.hdr)
			if st != http.StatusBadRequest && st != http.StatusUnauthorized && st != http.StatusForbidden {
				t.Errorf("GET %s %v: status %d, want 400, 401 or 403", a.path, a.hdr, st)
			}
			if n := r.echo.count(); n != before {
				t.Errorf("GET %s %v reached the upstream without credentials", a.path, a.hdr)
			}
		})
	}

	t.Run("caller's X-Subject on a route without forward_claims", func(t *testing.T) {
		for _, p := range []string{"/none/x", "/elsewhere"} {
			st, _, h := rawGet(t, addr, p, map[string]string{"X-Subject": "mallory", "X-Client-Id": "mallory"})
			if st != http.StatusOK {
				t.Fatalf("%s: status %d", p, st)
			}
			if len(h["X-Subject"]) > 0 || len(h["X-Client-Id"]) > 0 {
				t.Errorf("%s: the upstream got the caller's X-Subject %q / X-Client-Id %q", p, h["X-Subject"], h["X-Client-Id"])
			}
		}
	})

	t.Run("429 with Retry-After", func(t *testing.T) {
		// Wrong secrets on a client_credentials route: tokengate's failure limiter answers
		// 429 with Retry-After (docs/decisions.md#the-decision-table), which the gateway must pass on.
		basic := "Basic " + basicAuth(idpExchangeClient, "wrong-secret-for-the-test")
		var st int
		var h http.Header
		for i := 0; i < 8 && st != http.StatusTooManyRequests; i++ {
			st, h, _ = rawGet(t, addr, "/exchanged/x", map[string]string{"Authorization": basic})
		}
		if st != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
			t.Errorf("after 8 wrong secrets: status %d, Retry-After %q; want 429 with Retry-After (headers %v)", st, h.Get("Retry-After"), h)
		}
	})
}

func basicAuth(user, pass string) string {
	r := &http.Request{Header: http.Header{}}
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// TestNginxEndToEnd: nginx/nginx.conf in front of tokengate.yaml as compose's tokengate-nginx
// runs it (forward_auth_headers: x-original).
func TestNginxEndToEnd(t *testing.T) {
	bin := testkit.Tool(t, "nginx", "nginx")
	r := startRig(t, "tokengate-nginx")
	dir := t.TempDir()
	listen := testkit.FreeAddr(t)
	conf, err := NginxConfig(Addrs{Listen: listen, Tokengate: r.authzAddr, Upstream: strings.TrimPrefix(r.echo.srv.URL, "http://")}, dir)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	testkit.StartProcess(t, listen, nil, bin, "-p", dir, "-c", file, "-e", filepath.Join(dir, "error.log"))
	// A client's own X-Forwarded-Uri naming the public route (tokengate's `auto` reads that
	// family first).
	exerciseAttacks(t, r, listen, map[string]string{"X-Forwarded-Uri": "/none/x", "X-Forwarded-Method": "GET"})
}

// TestCaddyEndToEnd: caddy/Caddyfile in front of tokengate.yaml as compose's tokengate-fwd runs
// it (forward_auth_headers: x-forwarded).
func TestCaddyEndToEnd(t *testing.T) {
	bin := testkit.Tool(t, "caddy", "caddy")
	r := startRig(t, "tokengate-fwd")
	dir := t.TempDir()
	listen := testkit.FreeAddr(t)
	conf, err := Caddyfile(Addrs{Listen: listen, Tokengate: r.authzAddr, Upstream: strings.TrimPrefix(r.echo.srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	testkit.StartProcess(t, listen, []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}, bin, "run", "--config", file, "--adapter", "caddyfile")
	// A client's own X-Original-URI naming the public route.
	exerciseAttacks(t, r, listen, map[string]string{"X-Original-URI": "/none/x", "X-Original-Method": "GET"})
}

// TestNginxPassesTokengateStatuses runs nginx/nginx.conf against a stand-in /authz that answers
// each status tokengate may give, and checks the client gets that status: auth_request passes
// only 401 and 403 on and turns 400, 429 and 503 into 500, which the shipped error_page
// locations undo; a 429 keeps its Retry-After (issue 9 item 13). Independent of tokengate's own
// answers, so it proves the nginx file alone.
func TestNginxPassesTokengateStatuses(t *testing.T) {
	bin := testkit.Tool(t, "nginx", "nginx")
	authz := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uri := r.Header.Get("X-Original-URI")
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasPrefix(uri, "/s429/"):
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		case strings.HasPrefix(uri, "/s400/"):
			w.Header().Set("WWW-Authenticate", `Bearer realm="tokengate", error="invalid_request"`)
			w.WriteHeader(http.StatusBadRequest)
		case strings.HasPrefix(uri, "/s503/"):
			w.WriteHeader(http.StatusServiceUnavailable)
		case strings.HasPrefix(uri, "/s401/"):
			w.Header().Set("WWW-Authenticate", `Bearer realm="tokengate"`)
			w.WriteHeader(http.StatusUnauthorized)
		case strings.HasPrefix(uri, "/s403/"):
			w.WriteHeader(http.StatusForbidden)
		default:
			w.WriteHeader(http.StatusOK)
		}
		_, _ = io.WriteString(w, `{"error":"x"}`)
	}))
	defer authz.Close()
	echo := newEchoRecorder(t)
	dir := t.TempDir()
	listen := testkit.FreeAddr(t)
	conf, err := NginxConfig(Addrs{Listen: listen, Tokengate: strings.TrimPrefix(authz.URL, "http://"), Upstream: strings.TrimPrefix(echo.srv.URL, "http://")}, dir)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	testkit.StartProcess(t, listen, nil, bin, "-p", dir, "-c", file, "-e", filepath.Join(dir, "error.log"))
	for _, c := range []struct {
		path       string
		status     int
		retryAfter string
	}{
		{"/s429/x", http.StatusTooManyRequests, "7"},
		{"/s400/x", http.StatusBadRequest, ""},
		{"/s503/x", http.StatusServiceUnavailable, ""},
		{"/s401/x", http.StatusUnauthorized, ""},
		{"/s403/x", http.StatusForbidden, ""},
		{"/ok/x", http.StatusOK, ""},
	} {
		st, h, _ := rawGet(t, listen, c.path, nil)
		if st != c.status || h.Get("Retry-After") != c.retryAfter {
			t.Errorf("%s: status %d, Retry-After %q; want %d, %q", c.path, st, h.Get("Retry-After"), c.status, c.retryAfter)
		}
		if st != http.StatusOK && h.Get("Content-Type") != "application/json" {
			t.Errorf("%s: content-type %q, want application/json", c.path, h.Get("Content-Type"))
		}
	}
}

// testPKI is what TestNginxCertificateBoundTokens makes: a client CA nginx trusts with two client
// certificates of it, a client certificate of another CA, and nginx's server certificate.
type testPKI struct {
	serverPool                 *x509.CertPool
	serverCert, serverKey, ca  []byte // PEM files for nginx
	clientA, clientB, stranger tls.Certificate
	clientAPEM                 string
}

// newTestPKI makes the CAs and certificates; nginx's server certificate is for 127.0.0.1.
func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	serverCA, clientCA, other := testkit.NewCA(t, "server CA"), testkit.NewCA(t, "client CA"), testkit.NewCA(t, "another CA")
	server := serverCA.Issue(t, testkit.LeafSpec{CN: "nginx", Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	clientA := clientCA.Issue(t, testkit.LeafSpec{CN: "client A"})
	return &testPKI{
		serverPool: serverCA.Pool, serverCert: server.CertPEM, serverKey: server.KeyPEM, ca: clientCA.PEM,
		clientA: clientA.TLS(), clientAPEM: string(clientA.CertPEM),
		clientB:  clientCA.Issue(t, testkit.LeafSpec{CN: "client B"}).TLS(),
		stranger: other.Issue(t, testkit.LeafSpec{CN: "client of another CA"}).TLS(),
	}
}

// TestNginxCertificateBoundTokens: nginx/nginx.conf's TLS listener with client certificates in
// front of tokengate.yaml as compose's tokengate-nginx runs it (client_cert_header:
// x-client-cert). A token bound to a certificate (RFC 8705 §3, cnf.x5t#S256) passes with that
// certificate only; nginx refuses a certificate of another CA itself; on the plain listener a
// client's own X-Client-Cert never reaches tokengate or the upstream.
func TestNginxCertificateBoundTokens(t *testing.T) {
	bin := testkit.Tool(t, "nginx", "nginx")
	key, err := jose.GenerateKey("ES256", "idp-demo")
	if err != nil {
		t.Fatal(err)
	}
	r := startRigKey(t, "tokengate-nginx", key)
	pki := newTestPKI(t)
	dir := t.TempDir()
	files := map[string][]byte{"server.crt": pki.serverCert, "server.key": pki.serverKey, "client-ca.crt": pki.ca}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	listen, listenTLS := testkit.FreeAddr(t), testkit.FreeAddr(t)
	conf, err := NginxConfig(Addrs{
		Listen: listen, Tokengate: r.authzAddr, Upstream: strings.TrimPrefix(r.echo.srv.URL, "http://"),
		TLS: &NginxTLS{Listen: listenTLS, Cert: filepath.Join(dir, "server.crt"), Key: filepath.Join(dir, "server.key"), ClientCA: filepath.Join(dir, "client-ca.crt")},
	}, dir)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	testkit.StartProcess(t, listen, nil, bin, "-p", dir, "-c", file, "-e", filepath.Join(dir, "error.log"))

	thumb, err := jose.CertificateThumbprint(pki.clientAPEM)
	if err != nil {
		t.Fatal(err)
	}
	// A caller token of the rig's IdP as its token endpoint issues them (client corp-app), bound
	// to client A's certificate.
	sign := func(extra map[string]any) string {
		now := time.Now()
		c := map[string]any{
			"iss": r.idpURL, "sub": idpCallerClient, "client_id": idpCallerClient, "aud": "api://gateway",
			"scope": "echo.read", "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
		}
		for k, v := range extra {
			c[k] = v
		}
		tok, err := key.Sign(c, "JWT")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	bound := sign(map[string]any{"cnf": map[string]any{"x5t#S256": thumb}})
	unbound := sign(nil)

	get := func(t *testing.T, base string, cert *tls.Certificate, hdr map[string]string) (int, http.Header, map[string][]string, error) {
		t.Helper()
		cfg := &tls.Config{RootCAs: pki.serverPool, MinVersion: tls.VersionTLS12}
		if cert != nil {
			// Sent whatever CAs nginx's CertificateRequest names (RFC 8446 §4.3.2
			// certificate_authorities): crypto/tls would otherwise keep the certificate of
			// another CA to itself, and the test would not show what nginx does with it.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}}
		req, _ := http.NewRequest(http.MethodGet, base+"/mint/x", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, nil, nil, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var echo struct {
			Headers map[string][]string `json:"headers"`
		}
		_ = json.Unmarshal(body, &echo)
		return resp.StatusCode, resp.Header, echo.Headers, nil
	}
	escapedA := url.QueryEscape(pki.clientAPEM)
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	withCert := func(tok string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + tok, "X-Client-Cert": escapedA}
	}

	cases := []struct {
		name   string
		base   string
		cert   *tls.Certificate
		hdr    map[string]string
		status int // 0: the TLS handshake or nginx refuses before any HTTP answer is possible
	}{
		{"bound token with its certificate", "https://" + listenTLS, &pki.clientA, bearer(bound), http.StatusOK},
		{"unbound token with a certificate", "https://" + listenTLS, &pki.clientA, bearer(unbound), http.StatusOK},
		{"unbound token without a certificate", "https://" + listenTLS, nil, bearer(unbound), http.StatusOK},
		{"bound token with another certificate of the CA", "https://" + listenTLS, &pki.clientB, bearer(bound), http.StatusUnauthorized},
		{"bound token without a certificate", "https://" + listenTLS, nil, bearer(bound), http.StatusUnauthorized},
		// The client's own header names the right certificate; nginx overwrites it with the one
		// it verified (B's) or with nothing.
		{"bound token, another certificate, client's X-Client-Cert", "https://" + listenTLS, &pki.clientB, withCert(bound), http.StatusUnauthorized},
		{"bound token, no certificate, client's X-Client-Cert", "https://" + listenTLS, nil, withCert(bound), http.StatusUnauthorized},
		{"bound token over plain HTTP with client's X-Client-Cert", "http://" + listen, nil, withCert(bound), http.StatusUnauthorized},
		// nginx verifies the certificate against client-ca.crt and answers 400 itself.
		{"bound token with a certificate of another CA", "https://" + listenTLS, &pki.stranger, bearer(bound), http.StatusBadRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := r.echo.count()
			st, h, up, err := get(t, c.base, c.cert, c.hdr)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			if st != c.status {
				t.Fatalf("status %d, want %d (headers %v)", st, c.status, h)
			}
			switch st {
			case http.StatusOK:
				// The upstream gets nginx's own view of the certificate, never the client's.
				want := ""
				if c.cert == &pki.clientA {
					want = escapedA
				}
				if got := strings.Join(up["X-Client-Cert"], ","); !sameEscapedPEM(got, want) {
					t.Errorf("upstream X-Client-Cert %q, want %q", got, want)
				}
			case http.StatusUnauthorized:
				if w := h.Get("WWW-Authenticate"); !strings.HasPrefix(w, `Bearer realm="tokengate"`) || !strings.Contains(w, `error="invalid_token"`) {
					t.Errorf("WWW-Authenticate %q, want a Bearer invalid_token challenge", w)
				}
				if n := r.echo.count(); n != before {
					t.Error("a refused request reached the upstream")
				}
			default:
				if n := r.echo.count(); n != before {
					t.Error("a refused request reached the upstream")
				}
			}
		})
	}

	t.Run("client's X-Client-Cert on the plain listener never reaches the upstream", func(t *testing.T) {
		st, _, up := rawGet(t, listen, "/none/x", map[string]string{"X-Client-Cert": escapedA})
		if st != http.StatusOK || len(up["X-Client-Cert"]) != 0 {
			t.Errorf("status %d, upstream X-Client-Cert %q; want 200 and none", st, up["X-Client-Cert"])
		}
	})
}

// sameEscapedPEM compares two URL-encoded PEM certificates by their decoded text (nginx and Go
// escape different sets of characters).
func sameEscapedPEM(a, b string) bool {
	da, errA := url.QueryUnescape(a)
	db, errB := url.QueryUnescape(b)
	return errA == nil && errB == nil && da == db
}
