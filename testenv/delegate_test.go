package testenv_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/testenv"
)

// TestDemoDelegateRoute drives the demo's token_exchange route end to end (RFC 8693 §2.1):
// the user's token of the fake IdP goes to the IdP as subject_token, tokengate authenticates
// as its own client, and the upstream gets the IdP's answer, a token for the echo upstream
// that names the user. A second Check with the same caller token is served from the cache.
func TestDemoDelegateRoute(t *testing.T) {
	s := startStack(t)
	gw := s.Gateway.URL()
	before := s.IdP.ExchangeRequests()

	r := call(t, gw, "/delegate/hello", bearer(s.UserToken))
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	got := r.echo.Headers["Authorization"]
	want := "Bearer " + testenv.ExchangedToken("demo-user", testenv.DemoExchangeAudience, 0)
	want = want[:strings.LastIndex(want, "-")+1] // the IdP's sequence number varies
	if len(got) != 1 || !strings.HasPrefix(got[0], want) {
		t.Fatalf("upstream saw Authorization %q, want prefix %q", got, want)
	}
	if sub := r.echo.Headers["X-Subject"]; len(sub) != 1 || sub[0] != "demo-user" {
		t.Errorf("upstream saw X-Subject %q", sub)
	}
	form, client := s.IdP.LastExchange()
	for k, v := range map[string]string{
		"grant_type":         "urn:ietf:params:oauth:grant-type:token-exchange",
		"subject_token":      s.UserToken,
		"subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
		"audience":           testenv.DemoExchangeAudience,
		"scope":              "echo.read",
	} {
		if form.Get(k) != v {
			t.Errorf("exchange request %s = %q, want %q", k, form.Get(k), v)
		}
	}
	if client != testenv.GatewayClientID {
		t.Errorf("exchange authenticated as %q, want %q", client, testenv.GatewayClientID)
	}

	if r := call(t, gw, "/delegate/again", bearer(s.UserToken)); r.status != http.StatusOK {
		t.Fatalf("second call: status %d: %s", r.status, r.body)
	}
	if n := s.IdP.ExchangeRequests() - before; n != 1 {
		t.Errorf("%d exchanges for two Checks with one caller token, want 1", n)
	}

	// Only the IdP's users are delegated: a token of tokengate's own issuer is not a subject
	// the IdP would accept, and the route does not take it.
	self, err := s.ClientToken(context.Background(), "echo.read")
	if err != nil {
		t.Fatal(err)
	}
	assertDenial(t, call(t, gw, "/delegate/hello", bearer(self)), 401, `Bearer realm="tokengate", error="invalid_token"*`, "invalid_token")
	if n := s.IdP.ExchangeRequests() - before; n != 1 {
		t.Errorf("a refused caller reached the IdP (%d exchanges)", n)
	}

	// The IdP refusing this user for this upstream is the caller's denial (403), not an outage.
	s.IdP.SetExchange(testenv.ExchangeRefuse, "invalid_target")
	other, err := s.IdP.CallerToken(map[string]any{"sub": "mallory", "aud": testenv.DemoOpaqueAudience, "scope": "echo.read"})
	if err != nil {
		t.Fatal(err)
	}
	r = call(t, gw, "/delegate/hello", bearer(other))
	if r.status != http.StatusForbidden || !strings.Contains(string(r.body), `"access_denied"`) {
		t.Fatalf("refused exchange: %d %s, want 403 access_denied", r.status, r.body)
	}
	if strings.Contains(string(r.body)+r.header.Get("WWW-Authenticate"), other) {
		t.Error("the denial quotes the caller's token")
	}
}

// TestDemoTokenExchangeAtTokengate drives the demo's token-exchange client at tokengate's own
// token endpoint (RFC 8693 §2.1): the new token names the caller as sub and the service as the
// current actor (§4.1), its scope is only ever narrowed, and its audience must be one of the
// client's (RFC 8707 §2; invalid_target otherwise).
func TestDemoTokenExchangeAtTokengate(t *testing.T) {
	s := startStack(t)
	subject, err := s.ClientToken(context.Background(), "echo.read")
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(audience, scope string) (int, map[string]any) {
		t.Helper()
		form := url.Values{
			"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"subject_token":      {subject},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
			"audience":           {audience},
			"scope":              {scope},
		}
		return postForm(t, s.TokenURL(), testenv.ServiceClientID, testenv.ServiceSecret, form)
	}

	status, body := exchange(testenv.ServiceAudience, "echo.read")
	if status != http.StatusOK || body["issued_token_type"] != "urn:ietf:params:oauth:token-type:access_token" {
		t.Fatalf("exchange: %d %v", status, body)
	}
	tok, _ := body["access_token"].(string)
	claims := introspectAs(t, s, testenv.ServiceClientID, testenv.ServiceSecret, tok)
	act, _ := claims["act"].(map[string]any)
	if claims["active"] != true || claims["sub"] != testenv.DemoClientID || claims["aud"] != testenv.ServiceAudience ||
		act["sub"] != testenv.ServiceClientID || claims["scope"] != "echo.read" {
		t.Fatalf("exchanged token introspects as %v", claims)
	}

	for _, tt := range []struct{ name, audience, scope, error string }{
		{"scope the client lacks", testenv.ServiceAudience, "admin", "invalid_scope"},
		{"audience not the client's", testenv.DemoMintAudience, "echo.read", "invalid_target"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if status, body := exchange(tt.audience, tt.scope); status != http.StatusBadRequest || body["error"] != tt.error {
				t.Fatalf("%d %v, want 400 %s", status, body, tt.error)
			}
		})
	}
}
