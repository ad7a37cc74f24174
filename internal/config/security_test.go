package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/testkit"
)

// TestWarnings checks the problems that are allowed but reported: a route an earlier route's
// match covers (never chosen by match), and a short client secret (issue 9, items 12 and 13).
func TestWarnings(t *testing.T) {
	tests := []struct {
		name, routes string
		want         []string
	}{
		{"catch-all first", `
  - {name: all, authenticate: {none: {}}, upstream: {remove: {}}}
  - {name: admin, match: {path_prefix: /admin/}, authenticate: {none: {}}, upstream: {remove: {}}}`,
			[]string{`routes[1].match: never chosen by match: routes[0] ("all") comes first and covers it; only a gateway that names the route reaches it`}},
		{"shorter prefix first", `
  - {name: api, match: {path_prefix: /api/}, authenticate: {none: {}}, upstream: {remove: {}}}
  - {name: admin, match: {path_prefix: /api/admin/, methods: [GET]}, authenticate: {none: {}}, upstream: {remove: {}}}`,
			[]string{`routes[1].match: never chosen by match: routes[0] ("api") comes first and covers it; only a gateway that names the route reaches it`}},
		{"wildcard host covers a host", `
  - {name: w, match: {authority: "*.example.com"}, authenticate: {none: {}}, upstream: {remove: {}}}
  - {name: h, match: {authority: a.example.com, path_prefix: /x/}, authenticate: {none: {}}, upstream: {remove: {}}}`,
			[]string{`routes[1].match: never chosen by match: routes[0] ("w") comes first and covers it; only a gateway that names the route reaches it`}},
		{"specific first is fine", `
  - {name: admin, match: {path_prefix: /admin/}, authenticate: {none: {}}, upstream: {remove: {}}}
  - {name: all, authenticate: {none: {}}, upstream: {remove: {}}}`, nil},
		{"methods narrower first is fine", `
  - {name: get, match: {path_prefix: /a/, methods: [GET]}, authenticate: {none: {}}, upstream: {remove: {}}}
  - {name: any, match: {path_prefix: /a/}, authenticate: {none: {}}, upstream: {remove: {}}}`, nil},
		{"ignore_case later is not covered by a case-sensitive prefix", `
  - {name: a, match: {path_prefix: /a/}, authenticate: {none: {}}, upstream: {remove: {}}}
  - {name: b, match: {path_prefix: /a/b/, ignore_case: true}, authenticate: {none: {}}, upstream: {remove: {}}}`, nil},
		{"ignore_case first covers", `
  - {name: a, match: {path_prefix: /A/, ignore_case: true}, authenticate: {none: {}}, upstream: {remove: {}}}
  - {name: b, match: {path_prefix: /a/b/}, authenticate: {none: {}}, upstream: {remove: {}}}`,
			[]string{`routes[1].match: never chosen by match: routes[0] ("a") comes first and covers it; only a gateway that names the route reaches it`}},
		{"other host is fine", `
  - {name: a, match: {authority: a.example.com}, authenticate: {none: {}}, upstream: {remove: {}}}
  - {name: b, match: {authority: b.example.com}, authenticate: {none: {}}, upstream: {remove: {}}}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte("routes:"+tt.routes+"\n"), "", envMap(nil))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range cfg.Warnings {
				got = append(got, w.String())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("warnings = %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("short client secret", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "s"), []byte("REPLACE-ME\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		doc := `
issuer:
  issuer_url: https://tg.example.com
  signing_keys: [{kid: a, alg: ES256, generate: true}]
  clients:
    - {client_id: short, client_secret: "s3cret", audiences: [x]}
    - {client_id: file, client_secret_file: s, audiences: [x]}
    - {client_id: long, client_secret: "0123456789abcdef", audiences: [x]}
`
		cfg, err := Parse([]byte(doc), dir, envMap(nil))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, w := range cfg.Warnings {
			got = append(got, w.Path)
			if strings.Contains(w.Message, "s3cret") || strings.Contains(w.Message, "REPLACE") {
				t.Errorf("warning quotes the secret: %s", w)
			}
		}
		want := []string{"issuer.clients[0].client_secret", "issuer.clients[1].client_secret_file"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("warned paths = %q, want %q", got, want)
		}
	})
}

// TestServerSecuritySettings checks the good forms of the gateway-facing settings: gateway TLS
// files resolved against the configuration's directory, trusted proxies parsed, defaults.
func TestServerSecuritySettings(t *testing.T) {
	dir := t.TempDir()
	writeTestCert(t, dir)
	doc := `
server:
  authz_addr: "127.0.0.1:9002"
  metrics_addr: "127.0.0.1:9090"
  forward_auth_headers: x-original
  client_cert_header: X-Client-Cert
  trusted_proxies: ["10.0.0.0/8", "192.168.1.7", "::ffff:172.16.0.1", "fd00::/8"]
  gateway_tls:
    cert_file: tls.crt
    key_file: tls.key
    client_ca_file: tls.crt
    client_sans: [gateway.example.com, "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway"]
routes:
  - {name: r, authenticate: {none: {}}, upstream: {remove: {}}}
`
	cfg, err := Parse([]byte(doc), dir, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Server
	if s.ForwardAuthHeaders != ForwardAuthXOriginal || s.ClientCertHeader != "x-client-cert" {
		t.Errorf("forward_auth_headers %q, client_cert_header %q", s.ForwardAuthHeaders, s.ClientCertHeader)
	}
	wantPrefixes := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"),
		netip.MustParsePrefix("172.16.0.1/32"), netip.MustParsePrefix("fd00::/8"),
	}
	if !reflect.DeepEqual(s.TrustedProxyPrefixes, wantPrefixes) {
		t.Errorf("trusted proxies = %v, want %v", s.TrustedProxyPrefixes, wantPrefixes)
	}
	g := s.GatewayTLS
	if g.CertPath != filepath.Join(dir, "tls.crt") || g.KeyPath != filepath.Join(dir, "tls.key") || g.ClientCAPath != filepath.Join(dir, "tls.crt") {
		t.Errorf("resolved paths: %q %q %q", g.CertPath, g.KeyPath, g.ClientCAPath)
	}

	// A key that is not the certificate's is named, without quoting either file.
	other := t.TempDir()
	writeTestCert(t, other)
	doc2 := strings.Replace(doc, "key_file: tls.key", "key_file: "+filepath.Join(other, "tls.key"), 1)
	_, err = Parse([]byte(doc2), dir, envMap(nil))
	if err == nil || err.Error() != "line 8: server.gateway_tls: cert_file and key_file do not hold a matching PEM certificate and private key" {
		t.Errorf("mismatched pair: err = %v", err)
	}
}

// writeTestCert writes a self-signed TEST-ONLY server certificate and key as tls.crt and tls.key.
func writeTestCert(t *testing.T, dir string) {
	t.Helper()
	testkit.SelfSigned(t, testkit.LeafSpec{CN: "test-only", Server: true}).
		Write(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
}
