package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/testenv"
)

// TestOpaqueTokens runs the RFC 7662 provider end to end through forward-auth against the fake
// IdP's introspection endpoint: the phantom-token pattern on a mint route (the upstream gets a
// JWT tokengate signs, whose sub and client_id are the introspection answer's, verified here by
// presenting it to a route of the built-in issuer), the opaque token unchanged on a passthrough
// route, every refusal, and the IdP failing with and without a cached answer.
func TestOpaqueTokens(t *testing.T) {
	idp, err := testenv.NewIdP("", map[string]string{"gateway": "introspect-secret-0123"})
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	a, _, _ := start(t, writeConfig(t, fmt.Sprintf(`
issuer:
  issuer_url: https://tokengate.test
  signing_keys: [{kid: k1, alg: ES256, generate: true}]
providers:
  - {name: corp, issuer: "%[1]s", jwks_uri: "%[1]s/.well-known/jwks.json", audiences: ["api://gateway"]}
  - name: curity
    issuer: "%[1]s"
    audiences: ["api://gateway"]
    introspection:
      url: "%[2]s"
      client_id: gateway
      client_secret: introspect-secret-0123
  - {name: self, issuer: self, audiences: [orders-upstream]}
routes:
  - name: mint
    match: {path_prefix: /mint/}
    authenticate: {jwt: {providers: [corp, curity], scopes: [read]}}
    upstream: {mint: {audience: orders-upstream, scopes: [read]}}
    forward_claims: {x-tenant: tenant}
  - name: pass
    match: {path_prefix: /pass/}
    authenticate: {jwt: {providers: [curity]}}
    upstream: {passthrough: {}}
  - name: upstream
    match: {path_prefix: /up/}
    authenticate: {jwt: {providers: [self]}}
    upstream: {passthrough: {}}
    forward_claims: {x-sub: sub, x-client: client_id}
`, idp.URL(), idp.IntrospectionURL())))
	testenvWaitReady(t, a.HTTPAddr())

	authz := func(path, bearer string) (*http.Response, map[string]string) {
		t.Helper()
		resp, b := forwardAuth(t, a.HTTPAddr(), path, bearer)
		var body map[string]string
		_ = json.Unmarshal(b, &body)
		return resp, body
	}
	claims := map[string]any{"sub": "bob", "client_id": "mobile-app", "scope": "read write",
		"aud": "api://gateway", "tenant": "acme"}

	// Phantom token: opaque outside, a JWT inside.
	opaque := idp.OpaqueToken(claims)
	resp, _ := authz("/mint/orders", opaque)
	minted, ok := strings.CutPrefix(resp.Header.Get("Authorization"), "Bearer ")
	if resp.StatusCode != http.StatusOK || !ok || minted == opaque || strings.Count(minted, ".") != 2 {
		t.Fatalf("mint route: %d %q", resp.StatusCode, resp.Header.Get("Authorization"))
	}
	if got := resp.Header.Get("X-Tenant"); got != "acme" {
		t.Fatalf("x-tenant = %q, want the answer's tenant", got)
	}
	resp, _ = authz("/up/x", minted)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Sub") != "bob" || resp.Header.Get("X-Client") != "mobile-app" {
		t.Fatalf("minted token: %d sub %q client_id %q, want bob / mobile-app", resp.StatusCode,
			resp.Header.Get("X-Sub"), resp.Header.Get("X-Client"))
	}
	// A JWT of corp on the same route is verified with keys, not introspected.
	calls := idp.IntrospectionRequests()
	jwt, err := idp.CallerToken(map[string]any{"aud": "api://gateway", "scope": "read", "sub": "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if resp, _ := authz("/mint/orders", jwt); resp.StatusCode != http.StatusOK {
		t.Fatalf("corp JWT: %d", resp.StatusCode)
	}
	// Passthrough: the opaque token goes on unchanged (forward-auth echoes it); the answer is
	// cached, so neither request reached the IdP.
	resp, _ = authz("/pass/x", opaque)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Authorization") != "Bearer "+opaque {
		t.Fatalf("passthrough: %d %q", resp.StatusCode, resp.Header.Get("Authorization"))
	}
	if n := idp.IntrospectionRequests(); n != calls {
		t.Fatalf("introspection calls %d → %d: JWT introspected or cached answer not reused", calls, n)
	}

	// Missing scope is a 403 as for JWTs.
	if resp, body := authz("/mint/x", idp.OpaqueToken(map[string]any{"sub": "x", "scope": "write"})); resp.StatusCode != http.StatusForbidden ||
		body["error"] != "insufficient_scope" {
		t.Fatalf("insufficient scope: %d %v", resp.StatusCode, body)
	}

	for _, tt := range []struct {
		name   string
		mode   testenv.IntrospectMode
		status int
		error  string
	}{
		{"inactive", testenv.IntrospectInactive, 401, "invalid_token"},
		{"foreign iss", testenv.IntrospectForeignIss, 401, "invalid_token"},
		{"foreign aud", testenv.IntrospectForeignAud, 401, "invalid_token"},
		{"expired", testenv.IntrospectExpired, 401, "invalid_token"},
		{"IdP 500", testenv.Introspect500, 503, "temporarily_unavailable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			idp.SetIntrospection(tt.mode)
			defer idp.SetIntrospection(testenv.IntrospectNormal)
			tok := idp.OpaqueToken(claims)
			resp, body := authz("/mint/x", tok)
			if resp.StatusCode != tt.status || body["error"] != tt.error {
				t.Fatalf("%d %v, want %d %s", resp.StatusCode, body, tt.status, tt.error)
			}
			if tt.status == 401 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Fatalf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
			if strings.Contains(fmt.Sprint(body, resp.Header), tok) {
				t.Fatal("the denial quotes the token")
			}
			if tt.mode == testenv.Introspect500 {
				// A cached active answer still serves while the IdP fails.
				if resp, _ := authz("/pass/x", opaque); resp.StatusCode != http.StatusOK {
					t.Fatalf("cached answer while the IdP fails: %d", resp.StatusCode)
				}
			}
		})
	}
}
