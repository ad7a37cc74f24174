package app_test

import (
	"context"
	"os"
	"strings"
	"testing"
)

// allowHTTPConfig has one route of each upstream mode that requests tokens at an http:// token
// URL of a non-loopback host, which only server.allow_http_urls permits (docs/configuration.md#server).
// Nothing is fetched: a reload checks the URLs when it builds the routes' sources.
const allowHTTPConfig = `server:
  allow_http_urls: ALLOW
providers:
  - {name: corp, issuer: "http://idp.example.test", jwks_uri: "http://idp.example.test/jwks", audiences: [api]}
routes:
  - name: fetch
    match: {path_prefix: /fetch/}
    authenticate: {none: {}}
    upstream: {fetch: {token_url: "http://idp.example.test/token", client_id: gw, client_secret: gw-secret}}
  - name: exchanged
    match: {path_prefix: /exchanged/}
    authenticate: {client_credentials: {token_url: "http://idp.example.test/token"}}
    upstream: {exchanged: {}}
  - name: te
    match: {path_prefix: /te/}
    authenticate: {jwt: {providers: [corp]}}
    upstream: {token_exchange: {token_url: "http://idp.example.test/token", client_id: gw, client_secret: gw-secret, audience: orders}}
`

// TestReloadAppliesAllowHTTPURLsToUpstreamSources: server.allow_http_urls applies to a reload
// as a whole. The upstream token sources once checked their token URL against the token cache's
// flag, built once at start-up, while the verifier used the new generation's: turning the flag
// on by reload was refused ("URL must be https") for fetch, exchange and token_exchange routes,
// and turning it off would have kept accepting their http:// URLs.
func TestReloadAppliesAllowHTTPURLsToUpstreamSources(t *testing.T) {
	const plain = `routes:
  - {name: r, authenticate: {none: {}}, upstream: {remove: {}}}
`
	path := writeConfig(t, plain)
	a, _, _ := start(t, path)

	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(strings.Replace(allowHTTPConfig, "ALLOW", "true", 1))
	if err := a.Reload(context.Background()); err != nil {
		t.Fatalf("reload turning allow_http_urls on: %v", err)
	}

	// The reverse: a process that started with the flag on refuses the http:// URLs of a
	// reload that turns it off. Config validation says so first; the sources' own check is
	// exercised by the start-up above.
	path2 := writeConfig(t, strings.Replace(allowHTTPConfig, "ALLOW", "true", 1))
	b, _, _ := start(t, path2)
	if err := os.WriteFile(path2, []byte(strings.Replace(allowHTTPConfig, "ALLOW", "false", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	err := b.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "http://") {
		t.Fatalf("reload turning allow_http_urls off: %v, want the http:// token URLs refused", err)
	}
}
