package app

// Who may call (docs/deployment.md#deployment-security): gateway_tls on grpc_addr and authz_addr, with client
// certificates of one CA and SANs, checked by real TLS handshakes against the real servers, with
// certificates the test generates.

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tokengate/tokengate/internal/testkit"
)

const (
	serverName  = "tokengate.test"
	gatewayDNS  = "gw.example.test"
	gatewaySPID = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway"
)

func writeFile(t *testing.T, path string, data []byte, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// A distinct modification time, so the change is seen whatever the file system's resolution.
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// runApp starts an App from a configuration file in dir and stops it when the test ends.
func runApp(t *testing.T, dir, yaml string, now func() time.Time, logs io.Writer) *App {
	t.Helper()
	path := filepath.Join(dir, "tokengate.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if logs == nil {
		logs = io.Discard
	}
	a, err := New(context.Background(), Options{
		ConfigPath: path, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Now: now,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return a
}

const publicRoute = `routes:
  - {name: public, authenticate: {none: {}}, upstream: {remove: {}}}
`

// pki is the certificates of the gateway TLS tests, written where the configuration names them.
type pki struct {
	serverCA, gatewayCA, otherCA *testkit.CA
	server                       *testkit.Leaf
}

func newPKI(t *testing.T, dir string) *pki {
	p := &pki{serverCA: testkit.NewCA(t, "server CA"), gatewayCA: testkit.NewCA(t, "gateways CA"), otherCA: testkit.NewCA(t, "another CA")}
	p.server = p.serverCA.Issue(t, testkit.LeafSpec{CN: "tokengate", Server: true, DNS: []string{serverName}})
	mtime := time.Now().Add(-time.Hour)
	writeFile(t, filepath.Join(dir, "tls", "tls.crt"), p.server.CertPEM, mtime)
	writeFile(t, filepath.Join(dir, "tls", "tls.key"), p.server.KeyPEM, mtime)
	writeFile(t, filepath.Join(dir, "tls", "gateways-ca.crt"), p.gatewayCA.PEM, mtime)
	return p
}

// gatewayTLSConfig has relative file names: they are resolved against the configuration file's
// directory.
const gatewayTLSConfig = `server:
  authz_addr: "127.0.0.1:0"
  metrics_addr: "127.0.0.1:0"
  gateway_tls:
    cert_file: tls/tls.crt
    key_file: tls/tls.key
    client_ca_file: tls/gateways-ca.crt
    client_sans: [` + gatewayDNS + `, "` + gatewaySPID + `"]
` + publicRoute

func (p *pki) clientTLS(cert *testkit.Leaf) *tls.Config {
	c := &tls.Config{RootCAs: p.serverCA.Pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
	// Always present the certificate, as a gateway configured with one does (Go's client would
	// otherwise keep back one whose issuer the server did not list).
	c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if cert == nil {
			return &tls.Certificate{}, nil
		}
		tc := cert.TLS()
		return &tc, nil
	}
	return c
}

func checks(t *testing.T, a *App) float64 {
	t.Helper()
	return testkit.CounterValue(t, a.metrics, "tokengate_check_total", nil)
}

// grpcCheck makes one real Check over TLS; it returns the decision's code or the RPC error.
func grpcCheck(t *testing.T, addr string, cfg *tls.Config) (code.Code, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/x", Host: "api.example.test", Scheme: "https",
			Headers: map[string]string{":method": "GET", ":path": "/x", ":authority": "api.example.test"},
		}},
	}})
	return code.Code(resp.GetStatus().GetCode()), err
}

// httpsGet makes one real HTTPS request; it returns the status or the transport error.
func httpsGet(t *testing.T, rawURL string, cfg *tls.Config) (int, error) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(rawURL)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// TestGatewayTLSClientCertificates (issue 9, finding 2): with gateway_tls and client_ca_file,
// gRPC and the authz listener serve only a gateway holding a certificate of that CA carrying an
// allowed SAN (DNS or SPIFFE URI); no certificate, another CA's or another SAN fails the TLS
// handshake and no decision is made.
func TestGatewayTLSClientCertificates(t *testing.T) {
	t.Run("client_sans", func(t *testing.T) { testGatewayClientCertificates(t, true) })
	// Without client_sans any certificate of the CA is a gateway; the CA check alone must refuse
	// the others.
	t.Run("no client_sans", func(t *testing.T) { testGatewayClientCertificates(t, false) })
}

func testGatewayClientCertificates(t *testing.T, withSANs bool) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	cfg := gatewayTLSConfig
	if !withSANs {
		cfg = strings.Replace(cfg, "    client_sans: [", "    # client_sans: [", 1)
	}
	a := runApp(t, dir, cfg, nil, nil)

	dnsGW := p.gatewayCA.Issue(t, testkit.LeafSpec{CN: "gateway", DNS: []string{gatewayDNS}})
	spiffeGW := p.gatewayCA.Issue(t, testkit.LeafSpec{CN: "gateway", URIs: []string{gatewaySPID}})
	upperGW := p.gatewayCA.Issue(t, testkit.LeafSpec{CN: "gateway", DNS: []string{strings.ToUpper(gatewayDNS)}})
	otherSAN := p.gatewayCA.Issue(t, testkit.LeafSpec{CN: "gateway", DNS: []string{"attacker.example.test"}, URIs: []string{"spiffe://cluster.local/ns/default/sa/attacker"}})
	otherCA := p.otherCA.Issue(t, testkit.LeafSpec{CN: "gateway", DNS: []string{gatewayDNS}, URIs: []string{gatewaySPID}})
	serverOnly := p.gatewayCA.Issue(t, testkit.LeafSpec{CN: "gateway", Server: true, DNS: []string{gatewayDNS}})

	tls11 := p.clientTLS(dnsGW)
	tls11.MinVersion, tls11.MaxVersion = tls.VersionTLS10, tls.VersionTLS11

	for _, tc := range []struct {
		name   string
		client *tls.Config
		served bool
	}{
		{"right CA, DNS SAN", p.clientTLS(dnsGW), true},
		{"right CA, SPIFFE URI SAN", p.clientTLS(spiffeGW), true},
		{"right CA, DNS SAN in capitals", p.clientTLS(upperGW), true},
		{"no certificate", p.clientTLS(nil), false},
		{"another CA, allowed SANs", p.clientTLS(otherCA), false},
		{"right CA, another SAN", p.clientTLS(otherSAN), !withSANs},
		{"right CA, not for client auth", p.clientTLS(serverOnly), false},
		{"TLS 1.1", tls11, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := checks(t, a)
			c, err := grpcCheck(t, a.GRPCAddr(), tc.client)
			status, herr := httpsGet(t, "https://"+a.AuthzAddr()+"/authz/x", tc.client)
			after := checks(t, a)
			if tc.served {
				if err != nil || c != code.Code_OK {
					t.Errorf("gRPC Check over TLS: %v %v, want OK", c, err)
				}
				if herr != nil || status != http.StatusOK {
					t.Errorf("HTTPS /authz: %d %v, want 200", status, herr)
				}
				if after-before != 2 {
					t.Errorf("%v decisions, want 2", after-before)
				}
				return
			}
			// With TLS 1.3 the client finishes its handshake before the server judges its
			// certificate, so an HTTP or gRPC client may see the closed connection rather than
			// the alert: these calls only have to fail.
			if err == nil {
				t.Errorf("gRPC Check: %v, want a failure", c)
			}
			if herr == nil {
				t.Errorf("HTTPS /authz: %d, want a failure", status)
			}
			// The alert itself, on both listeners and both TLS versions: in TLS 1.2 the
			// handshake fails; in TLS 1.3 the first read returns the server's alert.
			for _, addr := range []string{a.GRPCAddr(), a.AuthzAddr()} {
				for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
					cfg := tc.client.Clone()
					if cfg.MaxVersion == 0 {
						cfg.MinVersion, cfg.MaxVersion = v, v
					}
					if err := handshakeAlert(addr, cfg); err == nil || !strings.Contains(err.Error(), "tls:") {
						t.Errorf("%s TLS %x: %v, want a TLS alert", addr, v, err)
					}
				}
			}
			after = checks(t, a)
			if after != before {
				t.Errorf("%v decisions were made for a refused gateway", after-before)
			}
		})
	}

	// A plain-text client reaches neither gateway listener.
	if status, err := httpGet(t, "http://"+a.AuthzAddr()+"/authz/x"); err == nil && status == http.StatusOK {
		t.Error("plain HTTP /authz was served on the TLS authz listener")
	}
	// /healthz is served on the authz listener to a gateway; /metrics on its own listener.
	if status, err := httpsGet(t, "https://"+a.AuthzAddr()+"/healthz", p.clientTLS(dnsGW)); err != nil || status != 200 {
		t.Errorf("authz listener /healthz: %d %v", status, err)
	}
}

// handshakeAlert handshakes with addr and reads once: the error of a refused client is the
// server's TLS alert (in the handshake with TLS 1.2, at the first read with TLS 1.3).
func handshakeAlert(addr string, cfg *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	return err
}

func httpGet(t *testing.T, rawURL string) (int, error) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get(rawURL)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// TestGatewayTLSWithoutClientCA: gateway_tls without client_ca_file is server TLS only: any
// client is served over TLS (the network decides who reaches it), and plain text is not.
func TestGatewayTLSWithoutClientCA(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	a := runApp(t, dir, `server:
  authz_addr: "127.0.0.1:0"
  gateway_tls: {cert_file: tls/tls.crt, key_file: tls/tls.key}
`+publicRoute, nil, nil)
	if c, err := grpcCheck(t, a.GRPCAddr(), p.clientTLS(nil)); err != nil || c != code.Code_OK {
		t.Errorf("gRPC Check over TLS: %v %v", c, err)
	}
	if status, err := httpsGet(t, "https://"+a.AuthzAddr()+"/authz/x", p.clientTLS(nil)); err != nil || status != 200 {
		t.Errorf("HTTPS /authz: %d %v", status, err)
	}
	// The issuer-facing http_addr stays plain.
	if status, err := httpGet(t, "http://"+a.HTTPAddr()+"/healthz"); err != nil || status != 200 {
		t.Errorf("http_addr /healthz: %d %v", status, err)
	}
}

// tlsRequest handshakes with addr and makes one HTTP/1.1 request on the connection; it returns
// the server certificate's serial and any error (with TLS 1.3 a refused client certificate
// shows at the first read, not in the handshake).
func tlsRequest(addr string, cfg *tls.Config) (*big.Int, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	return conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// TestGatewayTLSRotation: the certificate files are re-read when they change (cert-manager
// renewing the Secret), without a reload: at most one look per second, one read per change; a
// new client CA applies to the next handshake; files that cannot be read keep the previous
// certificate, warned once.
func TestGatewayTLSRotation(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	clock := testkit.NewClock(time.Now())
	var logs testkit.LogBuffer
	a := runApp(t, dir, gatewayTLSConfig, clock.Now, &logs)
	gc := a.gatewayCerts
	loads := func() int { gc.mu.Lock(); defer gc.mu.Unlock(); return gc.loads }
	gw := p.gatewayCA.Issue(t, testkit.LeafSpec{CN: "gateway", DNS: []string{gatewayDNS}})
	client := func() *tls.Config { c := p.clientTLS(gw); c.NextProtos = []string{"http/1.1"}; return c }

	serve := func(t *testing.T, want *big.Int) {
		t.Helper()
		got, err := tlsRequest(a.AuthzAddr(), client())
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		if got.Cmp(want) != 0 {
			t.Fatalf("server certificate serial %v, want %v", got, want)
		}
	}
	serve(t, p.server.Cert.SerialNumber)
	if n := loads(); n != 1 {
		t.Fatalf("%d reads at start, want 1", n)
	}

	renewed := p.serverCA.Issue(t, testkit.LeafSpec{CN: "tokengate", Server: true, DNS: []string{serverName}})
	mtime := time.Now()
	writeFile(t, filepath.Join(dir, "tls", "tls.crt"), renewed.CertPEM, mtime)
	writeFile(t, filepath.Join(dir, "tls", "tls.key"), renewed.KeyPEM, mtime)

	// Within a second of the last look the files are not looked at again.
	clock.Advance(500 * time.Millisecond)
	serve(t, p.server.Cert.SerialNumber)
	if n := loads(); n != 1 {
		t.Fatalf("%d reads, want 1: the files were looked at within the second", n)
	}
	clock.Advance(time.Second)
	serve(t, renewed.Cert.SerialNumber)
	if n := loads(); n != 2 {
		t.Fatalf("%d reads after a change, want 2", n)
	}
	clock.Advance(2 * time.Second)
	serve(t, renewed.Cert.SerialNumber)
	if n := loads(); n != 2 {
		t.Fatalf("%d reads, want 2: unchanged files were read again", n)
	}

	// A half-written rotation: the previous certificate keeps serving, one warning, one read.
	writeFile(t, filepath.Join(dir, "tls", "tls.crt"), []byte("not a certificate"), mtime.Add(time.Minute))
	for range 3 {
		clock.Advance(2 * time.Second)
		serve(t, renewed.Cert.SerialNumber)
	}
	if n := loads(); n != 3 {
		t.Fatalf("%d reads, want 3: broken files are read once per change", n)
	}
	if n := strings.Count(logs.String(), "cannot be read; the previous certificate stays in use"); n != 1 {
		t.Fatalf("%d warnings about the broken files, want 1:\n%s", n, logs.String())
	}

	// The gateways' CA is replaced: the old gateway certificate is refused at the handshake.
	writeFile(t, filepath.Join(dir, "tls", "tls.crt"), renewed.CertPEM, mtime.Add(2*time.Minute))
	writeFile(t, filepath.Join(dir, "tls", "gateways-ca.crt"), p.otherCA.PEM, mtime.Add(2*time.Minute))
	clock.Advance(2 * time.Second)
	if _, err := tlsRequest(a.AuthzAddr(), client()); err == nil || !strings.Contains(err.Error(), "tls:") {
		t.Fatalf("a gateway certificate of the replaced CA: %v, want a TLS error", err)
	}
	gw = p.otherCA.Issue(t, testkit.LeafSpec{CN: "gateway", DNS: []string{gatewayDNS}})
	serve(t, renewed.Cert.SerialNumber)
}

// TestListenersMoveEndpoints (issue 9, finding 2): authz_addr and metrics_addr take /authz and
// /metrics off http_addr (404 there); with client_ca_file and no authz_addr /authz is served
// nowhere; /healthz answers on every listener.
func TestListenersMoveEndpoints(t *testing.T) {
	type want struct{ http, authz, metrics map[string]int }
	for _, tc := range []struct {
		name   string
		server string
		tls    bool
		want   want
	}{
		{"defaults: everything on http_addr", "", false, want{
			http: map[string]int{"/authz/x": 200, "/authz": 200, "/metrics": 200, "/healthz": 200, "/readyz": 200},
		}},
		{"authz_addr and metrics_addr", `  authz_addr: "127.0.0.1:0"
  metrics_addr: "127.0.0.1:0"
`, false, want{
			http:    map[string]int{"/authz/x": 404, "/authz": 404, "/metrics": 404, "/healthz": 200, "/readyz": 200},
			authz:   map[string]int{"/authz/x": 200, "/authz": 200, "/metrics": 404, "/healthz": 200},
			metrics: map[string]int{"/metrics": 200, "/authz/x": 404, "/healthz": 200},
		}},
		{"client_ca_file without authz_addr", `  gateway_tls: {cert_file: tls/tls.crt, key_file: tls/tls.key, client_ca_file: tls/gateways-ca.crt}
`, true, want{
			http: map[string]int{"/authz/x": 404, "/authz": 404, "/metrics": 200, "/healthz": 200},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.tls {
				newPKI(t, dir)
			}
			a := runApp(t, dir, "server:\n  http_addr: \"127.0.0.1:0\"\n"+tc.server+publicRoute, nil, nil)
			for _, l := range []struct {
				name, addr string
				paths      map[string]int
			}{{"http_addr", a.HTTPAddr(), tc.want.http}, {"authz_addr", a.AuthzAddr(), tc.want.authz}, {"metrics_addr", a.MetricsAddr(), tc.want.metrics}} {
				if (l.addr == "") != (l.paths == nil) {
					t.Fatalf("%s bound %q, want a listener: %v", l.name, l.addr, l.paths != nil)
				}
				for path, status := range l.paths {
					got, err := httpGet(t, "http://"+l.addr+path)
					if err != nil || got != status {
						t.Errorf("%s %s: %d %v, want %d", l.name, path, got, err, status)
					}
				}
			}
		})
	}
}

// TestExposureWarning (docs/deployment.md#deployment-security): one WARN line at start when issuer
// clients exist, /authz is on http_addr and no client_ca_file is set; none otherwise.
func TestExposureWarning(t *testing.T) {
	const issuer = `issuer:
  issuer_url: https://tokengate.example.test
  signing_keys: [{kid: k, alg: ES256, generate: true}]
  clients: [{client_id: c, client_secret: "a-long-enough-client-secret", audiences: [api]}]
`
	const line = "forward-auth /authz shares http_addr with the public token endpoint"
	for _, tc := range []struct {
		name, cfg string
		tls       bool
		warnings  int
	}{
		{"issuer clients, /authz on http_addr", issuer, false, 1},
		{"issuer clients, authz_addr", "server: {authz_addr: \"127.0.0.1:0\"}\n" + issuer, false, 0},
		{"issuer clients, client_ca_file", "server: {gateway_tls: {cert_file: tls/tls.crt, key_file: tls/tls.key, client_ca_file: tls/gateways-ca.crt}}\n" + issuer, true, 0},
		{"issuer clients, gateway_tls without client_ca_file", "server: {gateway_tls: {cert_file: tls/tls.crt, key_file: tls/tls.key}}\n" + issuer, true, 1},
		{"no issuer", "", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.tls {
				newPKI(t, dir)
			}
			var logs testkit.LogBuffer
			runApp(t, dir, tc.cfg+publicRoute, nil, &logs)
			n := 0
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, line) {
					if !strings.Contains(l, "level=WARN") {
						t.Errorf("not a WARN line: %s", l)
					}
					n++
				}
			}
			if n != tc.warnings {
				t.Errorf("%d exposure warnings, want %d:\n%s", n, tc.warnings, logs.String())
			}
		})
	}
}

// TestReloadKeepsListeners: a reload that changes addresses, gateway_tls or cache.upstream_tokens
// says they apply at restart; one that leaves them as the process started, or changes only what
// each generation builds anew (cache.verified_tokens), does not.
func TestReloadKeepsListeners(t *testing.T) {
	dir := t.TempDir()
	newPKI(t, dir)
	var logs testkit.LogBuffer
	a := runApp(t, dir, gatewayTLSConfig, nil, &logs)
	const restart = "take effect at the next restart"
	for _, tc := range []struct {
		name, from, to string
		warn           bool
	}{
		{"unchanged", "", "", false},
		{"client_sans", gatewayDNS + ",", "other.example.test,", true},
		{"metrics_addr", `  metrics_addr: "127.0.0.1:0"` + "\n", "", true},
		{"authz_addr", `authz_addr: "127.0.0.1:0"`, `authz_addr: "127.0.0.1:1"`, true},
		// The verified-token and introspection caches are built per generation: they apply now.
		{"cache.verified_tokens", "\nroutes:", "\ncache: {verified_tokens: 5}\nroutes:", false},
		{"cache.upstream_tokens", "\nroutes:", "\ncache: {upstream_tokens: 5}\nroutes:", true},
		{"back as started", "", "", false},
	} {
		body := strings.Replace(gatewayTLSConfig, tc.from, tc.to, 1)
		if tc.from != "" && body == gatewayTLSConfig {
			t.Fatalf("%s: the test's replacement changed nothing", tc.name)
		}
		if err := os.WriteFile(filepath.Join(dir, "tokengate.yaml"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		before := strings.Count(logs.String(), restart)
		if err := a.Reload(context.Background()); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := strings.Count(logs.String(), restart) - before; got != map[bool]int{true: 1}[tc.warn] {
			t.Errorf("%s: %d restart warnings, want warn=%v", tc.name, got, tc.warn)
		}
	}
}
