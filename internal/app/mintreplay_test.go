package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testkit"

	"github.com/tokengate/tokengate/testenv"
)

// TestMintedTokenIsNotACredentialForSelfRoutes is issue 9 finding 5 (docs/issuer.md#minting-for-mint-routes):
// a corp token with scope read becomes, through a mint route, a token tokengate signs for an
// upstream; replayed to tokengate's own `self` routes it must be refused (its audience is the
// upstream's, RFC 8725 §3.9). Before the fix the self provider accepted any audience, so the
// replayed token passed with the mint route's scopes.
func TestMintedTokenIsNotACredentialForSelfRoutes(t *testing.T) {
	idp, err := testenv.NewIdP("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	a, _, _ := start(t, writeConfig(t, fmt.Sprintf(`
issuer:
  issuer_url: https://tokengate.test
  signing_keys: [{kid: k1, alg: ES256, generate: true}]
  clients: [{client_id: svc, client_secret: "svc-secret-0123456789", scopes: [admin], audiences: [tokengate]}]
providers:
  - {name: corp, issuer: "%[1]s", jwks_uri: "%[1]s/.well-known/jwks.json", audiences: ["api://gateway"]}
  - {name: self, issuer: self}
routes:
  - name: mint
    match: {path_prefix: /mint/}
    authenticate: {jwt: {providers: [corp], scopes: [read]}}
    upstream: {mint: {audience: orders-upstream, scopes: [admin]}}
  - name: admin
    match: {path_prefix: /admin/}
    authenticate: {jwt: {providers: [self], scopes: [admin]}}
    upstream: {passthrough: {}}
`, idp.URL())))
	testenvWaitReady(t, a.HTTPAddr())

	authz := func(path, bearer string) *http.Response {
		t.Helper()
		resp, b := forwardAuth(t, a.HTTPAddr(), path, bearer)
		t.Logf("%s: %d %s", path, resp.StatusCode, b)
		return resp
	}
	corp, err := idp.CallerToken(map[string]any{"aud": "api://gateway", "scope": "read", "sub": "alice", "client_id": "web"})
	if err != nil {
		t.Fatal(err)
	}
	resp := authz("/mint/x", corp)
	minted, ok := strings.CutPrefix(resp.Header.Get("Authorization"), "Bearer ")
	if resp.StatusCode != http.StatusOK || !ok {
		t.Fatalf("mint route: %d %q", resp.StatusCode, resp.Header.Get("Authorization"))
	}
	if resp := authz("/admin/x", minted); resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("minted token replayed to a self route: %d %q, want 401 invalid_token", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	// A token the issuer gave its own client, for an audience the client may ask for, still passes.
	tokReq, _ := http.NewRequest("POST", "http://"+a.HTTPAddr()+"/oauth2/token",
		strings.NewReader("grant_type=client_credentials&scope=admin"))
	tokReq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	tokReq.SetBasicAuth("svc", "svc-secret-0123456789")
	tr, err := http.DefaultClient.Do(tokReq)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := jsonDecode(tr, &body); err != nil || body.AccessToken == "" {
		t.Fatalf("token endpoint: %d %v", tr.StatusCode, err)
	}
	if resp := authz("/admin/x", body.AccessToken); resp.StatusCode != http.StatusOK {
		t.Fatalf("the client's own token on the self route: %d, want 200", resp.StatusCode)
	}
}

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }

// testenvWaitReady waits for /readyz: every provider's keys loaded.
func testenvWaitReady(t *testing.T, addr string) {
	t.Helper()
	testkit.WaitFor(t, "readyz", 10*time.Second, 10*time.Millisecond, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
