package app_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/tokengate/tokengate/testenv"
)

// TestTokenExchangeRoute runs a token_exchange route end to end through forward-auth against
// the fake IdP's RFC 8693 grant: the upstream receives the token the IdP exchanged for the
// caller's (naming the caller), with each parameter of the route; one exchange per caller token,
// also for 50 concurrent requests; a refused exchange is 403 access_denied; the IdP failing or
// hanging is 503.
func TestTokenExchangeRoute(t *testing.T) {
	idp, err := testenv.NewIdP("", map[string]string{"gateway": "exchange-secret-0123"})
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	a, _, _ := start(t, writeConfig(t, fmt.Sprintf(`
providers:
  - {name: corp, issuer: "%[1]s", jwks_uri: "%[1]s/.well-known/jwks.json", audiences: ["api://gateway"]}
routes:
  - name: orders
    match: {path_prefix: /orders/}
    authenticate: {jwt: {providers: [corp]}}
    upstream:
      token_exchange:
        token_url: "%[2]s"
        client_id: gateway
        client_secret: exchange-secret-0123
        audience: "https://orders.example.com"
        resource: "https://orders.example.com/api"
        scopes: [orders.read]
        timeout: 300ms
`, idp.URL(), idp.TokenURL())))
	testenvWaitReady(t, a.HTTPAddr())

	authz := func(bearer string) (*http.Response, map[string]string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+a.HTTPAddr()+"/authz/orders/1", nil)
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var body map[string]string
		_ = json.Unmarshal(b, &body)
		return resp, body
	}
	caller := func(sub string) string {
		t.Helper()
		tok, err := idp.CallerToken(map[string]any{"aud": "api://gateway", "sub": sub})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	alice := caller("alice")
	resp, _ := authz(alice)
	got := resp.Header.Get("Authorization")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(got, "Bearer exchanged-alice-for-https%3A%2F%2Forders.example.com-") {
		t.Fatalf("exchange: %d %q", resp.StatusCode, got)
	}
	form, client := idp.LastExchange()
	for k, want := range map[string]string{
		"grant_type":           "urn:ietf:params:oauth:grant-type:token-exchange",
		"subject_token":        alice,
		"subject_token_type":   "urn:ietf:params:oauth:token-type:access_token",
		"requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
		"audience":             "https://orders.example.com",
		"resource":             "https://orders.example.com/api",
		"scope":                "orders.read",
	} {
		if form.Get(k) != want {
			t.Errorf("%s = %q, want %q", k, form.Get(k), want)
		}
	}
	if client != "gateway" || form.Get("client_secret") != "" {
		t.Errorf("client %q authenticated (secret in the body: %v), want gateway with Basic", client, form.Get("client_secret") != "")
	}

	// Cached per caller token: the same token again makes no exchange, another one does.
	if n := idp.ExchangeRequests(); n != 1 {
		t.Fatalf("exchanges = %d", n)
	}
	if resp, _ := authz(alice); resp.Header.Get("Authorization") != got || idp.ExchangeRequests() != 1 {
		t.Fatalf("cached: %q, exchanges %d", resp.Header.Get("Authorization"), idp.ExchangeRequests())
	}
	bob := caller("bob")
	var wg sync.WaitGroup
	codes := make([]int, 50)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := authz(bob)
			codes[i] = resp.StatusCode
			if !strings.HasPrefix(resp.Header.Get("Authorization"), "Bearer exchanged-bob-") {
				codes[i] = -1
			}
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Fatalf("concurrent request %d: %d", i, c)
		}
	}
	if n := idp.ExchangeRequests(); n != 2 {
		t.Fatalf("exchanges = %d after 50 concurrent requests with one new caller token, want 2", n)
	}

	for _, tt := range []struct {
		name   string
		mode   testenv.ExchangeMode
		code   string
		status int
		error  string
	}{
		{"refused invalid_target", testenv.ExchangeRefuse, "invalid_target", 403, "access_denied"},
		{"refused invalid_grant", testenv.ExchangeRefuse, "invalid_grant", 403, "access_denied"},
		{"own client rejected", testenv.ExchangeRefuse, "invalid_client", 503, "temporarily_unavailable"},
		{"IdP 500", testenv.Exchange500, "", 503, "temporarily_unavailable"},
		{"IdP hangs", testenv.ExchangeHang, "", 503, "temporarily_unavailable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			idp.SetExchange(tt.mode, tt.code)
			defer idp.SetExchange(testenv.ExchangeOK, "")
			tok := caller("carol-" + strings.ReplaceAll(tt.name, " ", "-"))
			resp, body := authz(tok)
			if resp.StatusCode != tt.status || body["error"] != tt.error {
				t.Fatalf("%d %v, want %d %s", resp.StatusCode, body, tt.status, tt.error)
			}
			if strings.Contains(fmt.Sprint(body, resp.Header), tok) {
				t.Fatal("the denial quotes the caller's token")
			}
		})
	}
	// The failures touched only their own callers' tokens: alice's is still served from the cache.
	if resp, _ := authz(alice); resp.StatusCode != http.StatusOK {
		t.Fatalf("cached token after the failures: %d", resp.StatusCode)
	}
}
