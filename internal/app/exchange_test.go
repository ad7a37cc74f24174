package app_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/app"
	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/testenv"
)

// TestIssuerTokenExchangeWired: issuer.token_exchange.subject_providers, a client's
// grant_types and an inline `jwks` reach the issuer: a corp user's token is exchanged by a
// client (RFC 8693) for one naming the user with `act` naming the client, and a
// private_key_jwt client (RFC 7523 §2.2) authenticates with an assertion it signs.
func TestIssuerTokenExchangeWired(t *testing.T) {
	idp, err := testenv.NewIdP("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	clientKey, err := jose.GenerateKey("ES256", "pk-1")
	if err != nil {
		t.Fatal(err)
	}
	set, err := jose.PublicJWKS([]*jose.SigningKey{clientKey})
	if err != nil {
		t.Fatal(err)
	}
	const issuerURL = "https://tokengate.test"
	path := writeConfig(t, fmt.Sprintf(`
issuer:
  issuer_url: %[2]s
  signing_keys: [{kid: k1, alg: ES256, generate: true}]
  token_exchange: {subject_providers: [corp]}
  clients:
    - {client_id: svc, client_secret: "svc-secret-0123456789", grant_types: [token_exchange], scopes: [read, write], audiences: [orders]}
    - {client_id: pk, jwks: %[3]s, scopes: [read], audiences: [orders]}
providers:
  - {name: corp, issuer: "%[1]s", jwks_uri: "%[1]s/.well-known/jwks.json", audiences: ["api://gateway"]}
`, idp.URL(), issuerURL, set))
	// `tokengate validate` builds the issuer too, without fetching anything.
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Check(cfg); err != nil {
		t.Fatalf("validate's check: %v", err)
	}
	a, _, _ := start(t, path)
	testenvWaitReady(t, a.HTTPAddr())

	post := func(form url.Values, basic ...string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+a.HTTPAddr()+"/oauth2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if len(basic) == 2 {
			req.SetBasicAuth(basic[0], basic[1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	claimsOf := func(tok string) map[string]any {
		t.Helper()
		parts := strings.Split(tok, ".")
		b, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]any
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		return c
	}

	user, err := idp.CallerToken(map[string]any{"aud": "api://gateway", "sub": "alice", "scope": "read admin"})
	if err != nil {
		t.Fatal(err)
	}
	status, body := post(url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {user},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"scope":              {"read"},
	}, "svc", "svc-secret-0123456789")
	if status != http.StatusOK {
		t.Fatalf("token exchange: %d %v", status, body)
	}
	c := claimsOf(body["access_token"].(string))
	act, _ := c["act"].(map[string]any)
	if c["sub"] != "alice" || c["client_id"] != "svc" || act["sub"] != "svc" || c["scope"] != "read" {
		t.Errorf("exchanged token: sub %v client_id %v act %v scope %v; want alice, svc, {sub: svc}, read", c["sub"], c["client_id"], c["act"], c["scope"])
	}

	now := time.Now()
	assertion, err := clientKey.Sign(map[string]any{"iss": "pk", "sub": "pk", "aud": issuerURL, "jti": "one",
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}, "JWT")
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{
		"grant_type": {"client_credentials"}, "client_id": {"pk"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	}
	if status, body := post(form); status != http.StatusOK || body["access_token"] == nil {
		t.Fatalf("private_key_jwt: %d %v", status, body)
	}
	if status, body := post(form); status != http.StatusUnauthorized || body["error"] != "invalid_client" {
		t.Fatalf("replayed assertion: %d %v, want 401 invalid_client", status, body)
	}
}
