package extauthz_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/tokengate/tokengate/extauthz"
	"github.com/tokengate/tokengate/internal/authlimit"
	"github.com/tokengate/tokengate/internal/defaults"
	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/internal/upstream"
	"github.com/tokengate/tokengate/issuer"
	"github.com/tokengate/tokengate/testenv"
)

var (
	invalidClient = want{code.Code_UNAUTHENTICATED, 401, `Basic realm="tokengate"`, "invalid_client"}
	slowDown      = want{code.Code_RESOURCE_EXHAUSTED, 429, "", "slow_down"}
)

// ccRig is an Authorizer with client_credentials routes behind the real gRPC server, with the
// real issuer (clients: self) and the real shared failure limiter.
type ccRig struct {
	idp    *testenv.IdP // issues tokens only for app:good-secret, and counts the requests
	iss    *issuer.Issuer
	clock  *testkit.Clock
	client authv3.AuthorizationClient
	authz  *extauthz.Authorizer
}

func newCCRig(t *testing.T) *ccRig {
	t.Helper()
	endpoint, err := testenv.NewIdP("", map[string]string{"app": "good-secret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(endpoint.Close)
	endpoint.SetTokenTTL(300 * time.Second)
	r := &ccRig{idp: endpoint, clock: testkit.NewClock(time.Now())}
	iss, err := issuer.New(issuer.Config{
		IssuerURL: selfURL, TokenTTL: time.Hour,
		Keys: []issuer.KeyConfig{{Kid: "self-1", Alg: "ES256", Generate: true}},
		Clients: []issuer.Client{{ID: "svc", SecretHashes: [][32]byte{sha256.Sum256([]byte("svc-secret-0123456789"))},
			Scopes: []string{"read"}, Audiences: []string{"gw"}}},
	}, issuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.iss = iss
	idp := upstream.ClientCredentials{TokenURL: r.idp.TokenURL(), AuthStyle: "basic", Timeout: 2 * time.Second, DefaultTTL: time.Minute}
	fetch := upstream.ClientCredentials{TokenURL: r.idp.TokenURL(), ClientID: "app", ClientSecret: "good-secret", AuthStyle: "basic",
		Timeout: 2 * time.Second, DefaultTTL: time.Minute}
	tokens := upstream.NewCache(upstream.Options{Size: 1000})
	t.Cleanup(tokens.Close)
	// Each route's sources, as internal/app builds them: every route verifies at its own
	// ExchangeSource (its own bound of verifications in flight), and the exchanged route passes
	// on the token its verification obtained.
	exchange := func(route string) *upstream.ExchangeSource {
		return must(upstream.NewExchangeSource(tokens, route, idp))
	}
	mint := func(route string) upstream.Source {
		return upstream.NewMintSource(tokens, route, iss, issuer.MintRequest{Audience: "machines", TTL: time.Minute})
	}
	exchanged := exchange("cc-exchanged")
	routes := []extauthz.Route{
		{Name: "cc-mint", PathPrefix: "/mint/", Auth: extauthz.AuthClientCredentials, Exchange: exchange("cc-mint"),
			Upstream: extauthz.UpstreamToken, Source: mint("cc-mint")},
		{Name: "cc-fetch", PathPrefix: "/fetch/", Auth: extauthz.AuthClientCredentials, Exchange: exchange("cc-fetch"),
			Upstream: extauthz.UpstreamToken, Source: must(upstream.NewFetchSource(tokens, "cc-fetch", fetch))},
		{Name: "cc-remove", PathPrefix: "/remove/", Auth: extauthz.AuthClientCredentials, Exchange: exchange("cc-remove"),
			Upstream: extauthz.UpstreamRemove},
		{Name: "cc-exchanged", PathPrefix: "/exchanged/", Auth: extauthz.AuthClientCredentials, Exchange: exchanged,
			Upstream: extauthz.UpstreamToken, Source: upstream.NewExchangedSource(exchanged)},
		{Name: "cc-self", PathPrefix: "/self/", Auth: extauthz.AuthClientCredentials, ClientsSelf: true,
			Upstream: extauthz.UpstreamToken, Source: mint("cc-self")},
	}
	authz, err := extauthz.New(routes, extauthz.Deps{
		Clients: iss,
		Limiter: authlimit.New(authlimit.Options{Now: r.clock.Now}),
	})
	if err != nil {
		t.Fatal(err)
	}
	r.authz = authz
	r.client = serveGRPC(t, extauthz.NewCheckServer(authz, nil))
	return r
}

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// fromIP sets attributes.source.address, as Envoy does with the downstream client's address.
func fromIP(ip string) reqOpt {
	return func(c *authv3.CheckRequest) {
		c.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}}
	}
}

func (r *ccRig) check(t *testing.T, path, auth string, opts ...reqOpt) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := r.client.Check(ctx, checkReq("api.example.com", path, "GET", map[string]string{"authorization": auth}, opts...))
	if err != nil {
		t.Fatalf("Check returned an RPC error: %v", err)
	}
	return resp
}

func okHeaders(resp *authv3.CheckResponse) map[string]string {
	h := map[string]string{}
	for _, o := range resp.GetOkResponse().GetHeaders() {
		h[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	return h
}

func deniedHeaders(resp *authv3.CheckResponse) map[string]string {
	h := map[string]string{}
	for _, o := range resp.GetDeniedResponse().GetHeaders() {
		h[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	return h
}

// TestClientCredentialsAlwaysVerifies is issue 9 finding 1: a client_credentials route
// verifies the caller's secret whatever its upstream mode; before the fix `app:anything` got a
// token tokengate signed for sub=app on mint routes, and the IdP was never called.
func TestClientCredentialsAlwaysVerifies(t *testing.T) {
	r := newCCRig(t)
	for _, path := range []string{"/mint/x", "/fetch/x", "/remove/x", "/exchanged/x"} {
		t.Run(path, func(t *testing.T) {
			before := r.idp.TokenRequests.Load()
			// A different wrong secret per route: a refusal is remembered per credentials.
			wrong := "anything" + path
			resp := r.check(t, path, basic("app", wrong), fromIP(fmt.Sprintf("10.1.0.%d", len(path))))
			assertDecision(t, resp, invalidClient, wrong)
			if r.idp.TokenRequests.Load() == before {
				t.Error("the IdP was not asked to verify the credentials")
			}
			resp = r.check(t, path, basic("app", "good-secret"), fromIP("10.2.0.1"))
			assertDecision(t, resp, allow)
			auth := okHeaders(resp)["authorization"]
			switch path {
			case "/remove/x":
				if auth != "" || !slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), "authorization") {
					t.Errorf("remove: authorization %q, headers_to_remove %v", auth, resp.GetOkResponse().GetHeadersToRemove())
				}
			case "/exchanged/x", "/fetch/x":
				if !strings.HasPrefix(auth, "Bearer opaque-app-") {
					t.Errorf("authorization = %q, want the IdP's token", auth)
				}
			case "/mint/x":
				u, err := jose.Parse(auth[len("Bearer "):], 8192)
				if err != nil {
					t.Fatal(err)
				}
				c, err := u.Verify(mustKeySet(t, r.iss), []string{"ES256"})
				if err != nil {
					t.Fatal(err)
				}
				if c.Raw["sub"] != "app" || c.Raw["client_id"] != "app" {
					t.Errorf("minted sub %v client_id %v, want app", c.Raw["sub"], c.Raw["client_id"])
				}
			}
		})
	}

	t.Run("clients: self", func(t *testing.T) {
		calls := r.idp.TokenRequests.Load()
		assertDecision(t, r.check(t, "/self/x", basic("svc", "wrong"), fromIP("10.3.0.1")), invalidClient, "wrong")
		assertDecision(t, r.check(t, "/self/x", basic("nobody", "svc-secret-0123456789"), fromIP("10.3.0.1")), invalidClient)
		resp := r.check(t, "/self/x", basic("svc", "svc-secret-0123456789"), fromIP("10.3.0.2"))
		assertDecision(t, resp, allow)
		if okHeaders(resp)["authorization"] == "" {
			t.Error("no minted token")
		}
		if r.idp.TokenRequests.Load() != calls {
			t.Error("clients: self called the IdP")
		}
	})
}

func mustKeySet(t *testing.T, iss *issuer.Issuer) *jose.KeySet {
	t.Helper()
	ks, _, err := jose.ParseKeySet(iss.PublicJWKS())
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// TestClientCredentialsFailureLimiter is issue 9 findings 1 and 6: guessing secrets through a
// client_credentials route is limited per (client id, caller IP) and per caller IP like the
// token endpoint (429 slow_down with Retry-After, without reaching the IdP), and the owner of
// the client id, calling from another address, is not locked out. Before the fix 60 guesses
// made 60 IdP calls.
func TestClientCredentialsFailureLimiter(t *testing.T) {
	for _, path := range []string{"/exchanged/x", "/self/x"} {
		t.Run(path, func(t *testing.T) {
			r := newCCRig(t)
			id, good := "app", "good-secret"
			if path == "/self/x" {
				id, good = "svc", "svc-secret-0123456789"
			}
			attacker := fromIP("192.0.2.66")
			for i := range authlimit.DefaultClientFailures {
				assertDecision(t, r.check(t, path, basic(id, fmt.Sprintf("guess-%d", i)), attacker), invalidClient)
			}
			calls := r.idp.TokenRequests.Load()
			for i := range 55 {
				resp := r.check(t, path, basic(id, fmt.Sprintf("more-%d", i)), attacker)
				assertDecision(t, resp, slowDown)
				if ra := deniedHeaders(resp)["retry-after"]; ra == "" || ra == "0" {
					t.Fatalf("429 without Retry-After: %q", ra)
				}
			}
			if got := r.idp.TokenRequests.Load(); got != calls {
				t.Errorf("limited guesses reached the IdP: %d calls", got-calls)
			}
			// The good secret from the guessing address is refused too: a guesser learns nothing.
			assertDecision(t, r.check(t, path, basic(id, good), attacker), slowDown)
			// The owner from its own address is unaffected.
			assertDecision(t, r.check(t, path, basic(id, good), fromIP("198.51.100.7")), allow)
			// After the penalty the guessing address may try again.
			r.clock.Advance(authlimit.DefaultPenalty + time.Second)
			assertDecision(t, r.check(t, path, basic(id, good), attacker), allow)
		})
	}
}

// TestRequiredClaimsByType is issue 9 finding 10: required claims compare by JSON type; before
// the fix "true" satisfied true and "5" satisfied 5 (both compared as text).
func TestRequiredClaimsByType(t *testing.T) {
	routes := []extauthz.Route{{Name: "typed", PathPrefix: "/", Auth: extauthz.AuthJWT, Providers: []string{"corp"},
		Claims:   map[string]any{"admin": true, "level": json.Number("5"), "groups": "admins"},
		Upstream: extauthz.UpstreamPassthrough}}
	r := newRigWithRoutes(t, routes, 100)
	good := map[string]any{"admin": true, "level": 5, "groups": "admins"}
	tests := []struct {
		name   string
		change map[string]any
		want   want
	}{
		{"all match", nil, allow},
		{"level 5.0", map[string]any{"level": 5.0}, allow},
		{"groups as an array holding admins", map[string]any{"groups": []any{"users", "admins"}}, allow},
		{"admin as the string true", map[string]any{"admin": "true"}, forbidden},
		{"admin false", map[string]any{"admin": false}, forbidden},
		{"level as the string 5", map[string]any{"level": "5"}, forbidden},
		{"level 6", map[string]any{"level": 6}, forbidden},
		{"groups without admins", map[string]any{"groups": []any{"users"}}, forbidden},
		{"groups as an object", map[string]any{"groups": map[string]any{"admins": true}}, forbidden},
		{"admin missing", map[string]any{"admin": nil}, forbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			claims := map[string]any{}
			for k, v := range good {
				claims[k] = v
			}
			for k, v := range tt.change {
				claims[k] = v
			}
			tok := r.token("es", claims)
			assertDecision(t, r.check(checkReq("a.example.com", "/x", "GET", map[string]string{"authorization": "Bearer " + tok})), tt.want, tok)
		})
	}
}

// TestClaimHeadersRemovedOnEveryRoute is issue 9 finding 12 (and 13 under Istio): a header any
// route forwards as a claim is removed on every other allowed route, so a caller cannot send
// x-subject itself to an upstream that trusts it. Before the fix the public route left it.
func TestClaimHeadersRemovedOnEveryRoute(t *testing.T) {
	r := newRig(t, 100)
	resp := r.check(checkReq("x.test", "/public/x", "GET", map[string]string{"x-subject": "admin"}))
	assertDecision(t, resp, allow)
	removed := resp.GetOkResponse().GetHeadersToRemove()
	for _, h := range []string{"x-subject", "x-scopes", "x-groups", "x-level", "x-missing"} {
		if !slices.Contains(removed, h) {
			t.Errorf("headers_to_remove %v lacks %s", removed, h)
		}
	}
	if slices.Contains(removed, "authorization") && okHeaders(resp)["authorization"] != "" {
		t.Error("authorization both set and removed")
	}
}

// TestMetadataDropsControlCharacters is issue 9 finding 12: dynamic_metadata values come from
// the token; CR/LF in them would forge access-log lines.
func TestMetadataDropsControlCharacters(t *testing.T) {
	r := newRig(t, 100)
	tok := r.token("es", map[string]any{"sub": "alice\r\nroute=admin\x00\u0085"})
	resp := r.check(checkReq("x.test", "/anything", "GET", map[string]string{"authorization": "Bearer " + tok}))
	assertDecision(t, resp, allow)
	sub := resp.GetDynamicMetadata().GetFields()["sub"].GetStringValue()
	if sub != "aliceroute=admin" {
		t.Errorf("metadata sub = %q, want the control characters dropped", sub)
	}
}

// TestForwardAuthFailureLimiter: the same limiter over forward-auth, where the caller IP is the
// socket peer (no trusted proxies): guesses from 127.0.0.2 end in 429 with Retry-After, while
// the owner's good secret from 127.0.0.3 passes. Real connections from distinct loopback
// source addresses, not a faked client IP.
func TestForwardAuthFailureLimiter(t *testing.T) {
	r := newCCRig(t)
	srv := httptest.NewServer(extauthz.NewForwardAuth(r.authz, nil, extauthz.ForwardAuthOptions{Headers: "x-forwarded"}))
	t.Cleanup(srv.Close)
	from := func(src string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	}
	do := func(c *http.Client, secret string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/authz", nil)
		req.Header.Set("X-Forwarded-Uri", "/self/x")
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Host", "api.example.com")
		req.Header.Set("Authorization", basic("svc", secret))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	guesser, owner := from("127.0.0.2"), from("127.0.0.3")
	for i := range authlimit.DefaultClientFailures {
		if resp := do(guesser, fmt.Sprintf("guess-%d", i)); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, resp.StatusCode)
		}
	}
	resp := do(guesser, "svc-secret-0123456789")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after %d failures: %d Retry-After %q, want 429 with Retry-After", authlimit.DefaultClientFailures, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp := do(owner, "svc-secret-0123456789"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the owner from another address: %d, want 200", resp.StatusCode)
	}
}

// must returns v; err is a broken test set-up (a source built from settings the test wrote).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestOversizedBasicRefusedBeforeTheIdP: server.max_token_bytes bounds every Authorization
// credential before it is parsed (docs/configuration.md), Basic as well as Bearer. Before the fix
// the limit applied only to Bearer tokens, so a Basic value of any size the transport carries was
// decoded and its secret sent to the IdP.
func TestOversizedBasicRefusedBeforeTheIdP(t *testing.T) {
	r := newCCRig(t)
	secret := strings.Repeat("s", defaults.MaxTokenBytes)
	for _, path := range []string{"/exchanged/x", "/self/x"} {
		resp := r.check(t, path, basic("app", secret), fromIP("10.9.0.1"))
		assertDecision(t, resp, want{code.Code_UNAUTHENTICATED, 401, `Basic realm="tokengate"`, "invalid_token"}, secret)
	}
	if got := r.idp.TokenRequests.Load(); got != 0 {
		t.Errorf("the IdP saw %d calls for an oversized credential, want 0", got)
	}
	// At the limit the credential is still judged (and here refused by the IdP).
	fits := strings.Repeat("s", defaults.MaxTokenBytes*3/4-len("app:"))
	if n := len(basic("app", fits)) - len("Basic "); n > defaults.MaxTokenBytes {
		t.Fatalf("test value %d bytes", n)
	}
	assertDecision(t, r.check(t, "/exchanged/x", basic("app", fits), fromIP("10.9.0.2")), invalidClient, fits)
	if got := r.idp.TokenRequests.Load(); got != 1 {
		t.Errorf("the IdP saw %d calls for a credential within the limit, want 1", got)
	}
}
