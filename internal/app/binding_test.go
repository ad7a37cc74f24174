package app_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/testenv"
)

// TestBindingWired: the app passes the providers' require_binding and server.client_cert_header
// to the authorizer (RFC 8705 §3): a certificate-bound token passes forward-auth with its
// certificate in the configured header, and is refused without it or with another one; an
// unbound token is refused on a provider that requires mtls.
func TestBindingWired(t *testing.T) {
	idp, err := testenv.NewIdP("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	a, _, _ := start(t, writeConfig(t, fmt.Sprintf(`
server:
  client_cert_header: X-Client-Cert
  forward_auth_headers: request
providers:
  - {name: corp, issuer: "%[1]s", jwks_uri: "%[1]s/.well-known/jwks.json", audiences: ["api://gateway"], require_binding: mtls}
routes:
  - {name: api, authenticate: {jwt: {providers: [corp]}}, upstream: {passthrough: {}}}
`, idp.URL())))
	testenvWaitReady(t, a.HTTPAddr())

	mine, another := testkit.SelfSigned(t, testkit.LeafSpec{CN: "client"}), testkit.SelfSigned(t, testkit.LeafSpec{CN: "another client"})
	certPEM, other, x5t := string(mine.CertPEM), string(another.CertPEM), mine.X5T()
	bound, err := idp.CallerToken(map[string]any{"aud": "api://gateway", "sub": "alice", "cnf": map[string]any{"x5t#S256": x5t}})
	if err != nil {
		t.Fatal(err)
	}
	unbound, err := idp.CallerToken(map[string]any{"aud": "api://gateway", "sub": "alice"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, token, cert string
		want              int
	}{
		{"bound, its certificate", bound, certPEM, http.StatusOK},
		{"bound, no certificate", bound, "", http.StatusUnauthorized},
		{"bound, another certificate", bound, other, http.StatusUnauthorized},
		{"unbound on a provider requiring mtls", unbound, certPEM, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+a.HTTPAddr()+"/authz/x", nil)
			req.Header.Set("Authorization", "Bearer "+tt.token)
			if tt.cert != "" {
				req.Header.Set("X-Client-Cert", url.QueryEscape(tt.cert)) // nginx $ssl_client_escaped_cert
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tt.want, resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}
