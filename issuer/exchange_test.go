package issuer

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/jwks"
	"github.com/tokengate/tokengate/internal/verify"
)

// lateVerifier lets the issuer hold its subject verifier before the verifier exists: the `self`
// provider needs the issuer's published keys, as in internal/app.
type lateVerifier struct {
	v atomic.Pointer[verify.Verifier]
}

func (l *lateVerifier) Verify(ctx context.Context, token string, providers []string) (*verify.Principal, error) {
	return l.v.Load().Verify(ctx, token, providers)
}

const (
	exchID     = "exch"
	exchSecret = "exch-secret-0123456789abcdef"
	pkjID      = "pkj"
	corpIss    = "https://corp.example"
	otherIss   = "https://other.example"
	gatewayAud = "api://gateway"
)

// xenv is an issuer with token exchange (subject providers self and corp; a third provider,
// other, is trusted by the verifier but not for exchange) and a private_key_jwt client.
type xenv struct {
	*env
	corp, other, client, stranger *jose.SigningKey
}

func mustKey(t testing.TB, alg, kid string) *jose.SigningKey {
	t.Helper()
	k, err := jose.GenerateKey(alg, kid)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func publicJWKS(t testing.TB, k *jose.SigningKey) []byte {
	t.Helper()
	b, err := jose.PublicJWKS([]*jose.SigningKey{k})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newXEnv(t testing.TB) *xenv {
	t.Helper()
	x := &xenv{corp: mustKey(t, "ES256", "corp-1"), other: mustKey(t, "ES256", "other-1"),
		client: mustKey(t, "ES256", "pkj-1"), stranger: mustKey(t, "ES256", "pkj-1")}
	clientKeys, _, err := jwks.NewStatic(publicJWKS(t, x.client))
	if err != nil {
		t.Fatal(err)
	}
	lv := &lateVerifier{}
	x.env = newEnv(t, func(c *Config, o *Options) {
		c.SubjectProviders = []string{"self", "corp"}
		o.Subjects = lv
		c.Clients = append(c.Clients,
			Client{ID: exchID, SecretHashes: [][32]byte{DigestSecret(exchSecret)}, TokenExchange: true,
				Scopes: []string{"read", "write", "admin"}, DefaultScopes: []string{"read", "write"},
				Audiences: []string{"orders", "billing"}, TokenTTL: time.Hour, Claims: map[string]any{"tenant": "acme"}},
			Client{ID: pkjID, Keys: clientKeys, Scopes: []string{"read"}, DefaultScopes: []string{"read"},
				Audiences: []string{"orders"}},
		)
	})
	v, err := verify.New(context.Background(), verify.Options{
		Providers: []verify.Provider{
			{Name: "self", Issuer: x.srv.URL, StaticJWKS: x.iss.PublicJWKS(), Audiences: x.iss.Audiences()},
			{Name: "corp", Issuer: corpIss, StaticJWKS: publicJWKS(t, x.corp), Audiences: []string{gatewayAud}},
			{Name: "other", Issuer: otherIss, StaticJWKS: publicJWKS(t, x.other), Audiences: []string{gatewayAud}},
		},
		CacheSize: 100, Now: x.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	lv.v.Store(v)
	return x
}

// subject signs a subject token with k for iss; over overrides or (nil) removes claims.
func (x *xenv) subject(t testing.TB, k *jose.SigningKey, iss string, over map[string]any) string {
	t.Helper()
	now := x.clock.Now()
	c := map[string]any{"iss": iss, "sub": "alice", "aud": gatewayAud, "iat": now.Unix(),
		"exp": now.Add(10 * time.Minute).Unix(), "scope": "read write", "jti": "j-" + iss}
	for n, v := range over {
		if v == nil {
			delete(c, n)
		} else {
			c[n] = v
		}
	}
	tok, err := k.Sign(c, "at+jwt")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func exchangeForm(subject string, kv ...string) string {
	return form(append([]string{"grant_type", GrantTokenExchange, "subject_token", subject,
		"subject_token_type", TokenTypeAccessToken}, kv...)...)
}

// exchanged checks a successful exchange answer and returns its claims.
func (x *xenv) exchanged(t testing.TB, res response) (map[string]any, tokenResponse) {
	t.Helper()
	if res.status != http.StatusOK {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	checkNoStore(t, res)
	var tr tokenResponse
	if err := json.Unmarshal(res.body, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.IssuedTokenType != TokenTypeAccessToken || tr.TokenType != "Bearer" {
		t.Errorf("answer %s", res.body)
	}
	_, c := x.verifyWithServedJWKS(t, tr.AccessToken)
	return c.Raw, tr
}

func TestTokenExchange(t *testing.T) {
	x := newXEnv(t)
	now := x.clock.Now()
	exch := basicAuth(exchID, exchSecret)
	type check func(t *testing.T, claims map[string]any, tr tokenResponse)
	claimIs := func(name string, want any) check {
		return func(t *testing.T, c map[string]any, _ tokenResponse) {
			got, _ := json.Marshal(c[name])
			w, _ := json.Marshal(want)
			if string(got) != string(w) {
				t.Errorf("%s = %s, want %s", name, got, w)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		auth   *[2]string
		body   string
		status int
		code   string
		checks []check
	}{
		{"delegation: sub kept, act names the client", exch, exchangeForm(x.subject(t, x.corp, corpIss, nil)), 200, "",
			[]check{claimIs("sub", "alice"), claimIs("act", map[string]any{"sub": exchID}), claimIs("client_id", exchID),
				claimIs("aud", "orders"), claimIs("scope", "read write"), claimIs("tenant", "acme"), claimIs("iss", x.srv.URL)}},
		{"act nested (RFC 8693 §4.1)", exch, exchangeForm(x.subject(t, x.corp, corpIss,
			map[string]any{"act": map[string]any{"sub": "svc-a", "act": map[string]any{"sub": "svc-0"}}})), 200, "",
			[]check{claimIs("act", map[string]any{"sub": exchID, "act": map[string]any{"sub": "svc-a", "act": map[string]any{"sub": "svc-0"}}})}},
		{"may_act naming the client", exch, exchangeForm(x.subject(t, x.corp, corpIss,
			map[string]any{"may_act": map[string]any{"sub": exchID}})), 200, "", nil},
		{"may_act naming another party", exch, exchangeForm(x.subject(t, x.corp, corpIss,
			map[string]any{"may_act": map[string]any{"sub": "someone-else"}})), 400, ErrInvalidGrant, nil},
		{"may_act not an object", exch, exchangeForm(x.subject(t, x.corp, corpIss,
			map[string]any{"may_act": exchID})), 400, ErrInvalidGrant, nil},
		{"default scopes narrowed to the subject's", exch, exchangeForm(x.subject(t, x.corp, corpIss,
			map[string]any{"scope": "read delete"})), 200, "", []check{claimIs("scope", "read")}},
		{"asked scope narrowed", exch, exchangeForm(x.subject(t, x.corp, corpIss, nil), "scope", "write"), 200, "",
			[]check{claimIs("scope", "write")}},
		{"scope the subject lacks", exch, exchangeForm(x.subject(t, x.corp, corpIss, nil), "scope", "read admin"),
			400, ErrInvalidScope, nil},
		{"scope the client lacks", exch, exchangeForm(x.subject(t, x.corp, corpIss,
			map[string]any{"scope": "read delete"}), "scope", "delete"), 400, ErrInvalidScope, nil},
		{"exp bounded by the subject's", exch, exchangeForm(x.subject(t, x.corp, corpIss,
			map[string]any{"exp": now.Add(2 * time.Minute).Unix()})), 200, "",
			[]check{claimIs("exp", json.Number(itoa(now.Add(2*time.Minute).Unix()))), func(t *testing.T, _ map[string]any, tr tokenResponse) {
				if tr.ExpiresIn != 120 {
					t.Errorf("expires_in = %d, want 120", tr.ExpiresIn)
				}
			}}},
		{"audience chosen", exch, exchangeForm(x.subject(t, x.corp, corpIss, nil), "audience", "billing"), 200, "",
			[]check{claimIs("aud", "billing")}},
		{"resource chosen", exch, exchangeForm(x.subject(t, x.corp, corpIss, nil), "resource", "billing"), 200, "",
			[]check{claimIs("aud", "billing")}},
		{"audience not the client's", exch, exchangeForm(x.subject(t, x.corp, corpIss, nil), "audience", "payroll"),
			400, ErrInvalidTarget, nil},
		{"two resources", exch, exchangeForm(x.subject(t, x.corp, corpIss, nil), "resource", "orders", "resource", "billing"),
			400, ErrInvalidTarget, nil},
		{"expired subject", exch, exchangeForm(x.subject(t, x.corp, corpIss,
			map[string]any{"exp": now.Add(-time.Hour).Unix(), "iat": now.Add(-2 * time.Hour).Unix()})), 400, ErrInvalidGrant, nil},
		{"subject for a foreign audience", exch, exchangeForm(x.subject(t, x.corp, corpIss,
			map[string]any{"aud": "api://elsewhere"})), 400, ErrInvalidGrant, nil},
		{"subject from a provider not in subject_providers", exch, exchangeForm(x.subject(t, x.other, otherIss, nil)),
			400, ErrInvalidGrant, nil},
		{"subject signed by another key", exch, exchangeForm(x.subject(t, x.other, corpIss, nil)), 400, ErrInvalidGrant, nil},
		{"subject not a JWT", exch, exchangeForm("opaque"), 400, ErrInvalidGrant, nil},
		// A sender-constrained subject would become a bearer token (docs/security.md#bound-tokens).
		{"DPoP-bound subject (cnf.jkt)", exch, exchangeForm(x.subject(t, x.corp, corpIss,
			map[string]any{"cnf": map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}})), 400, ErrInvalidGrant, nil},
		{"mTLS-bound subject (cnf.x5t#S256)", exch, exchangeForm(x.subject(t, x.corp, corpIss,
			map[string]any{"cnf": map[string]any{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}})), 400, ErrInvalidGrant, nil},
		{"subject with a cnf of no known method", exch, exchangeForm(x.subject(t, x.corp, corpIss,
			map[string]any{"cnf": map[string]any{"kid": "k"}})), 400, ErrInvalidGrant, nil},
		{"client without token_exchange", basicAuth(svcID, svcSecret), exchangeForm(x.subject(t, x.corp, corpIss, nil)),
			400, ErrUnauthorizedClient, nil},
		{"wrong secret", basicAuth(exchID, "nope"), exchangeForm(x.subject(t, x.corp, corpIss, nil)), 401, ErrInvalidClient, nil},
		{"no subject_token_type", exch, form("grant_type", GrantTokenExchange, "subject_token", "a.b.c"), 400, ErrInvalidRequest, nil},
		{"unknown subject_token_type", exch, form("grant_type", GrantTokenExchange, "subject_token", "a.b.c",
			"subject_token_type", "urn:ietf:params:oauth:token-type:id_token"), 400, ErrInvalidRequest, nil},
		{"requested_token_type other than access_token", exch, exchangeForm(x.subject(t, x.corp, corpIss, nil),
			"requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token"), 400, ErrInvalidRequest, nil},
		{"actor_token", exch, exchangeForm(x.subject(t, x.corp, corpIss, nil), "actor_token", "x",
			"actor_token_type", TokenTypeJWT), 400, ErrInvalidRequest, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := x.do(t, req{contentType: formCT, basic: tc.auth, body: tc.body})
			if tc.status != 200 {
				checkOAuthError(t, res, tc.status, tc.code)
				return
			}
			claims, tr := x.exchanged(t, res)
			for _, c := range tc.checks {
				c(t, claims, tr)
			}
		})
	}
}

// TestTokenExchangeSelfSubject exchanges a token of this issuer (provider self): a token issued
// to svc becomes one for exch acting for svc.
func TestTokenExchangeSelfSubject(t *testing.T) {
	x := newXEnv(t)
	sub := x.getToken(t, svcID, svcSecret, "scope", "read write", "audience", "orders")
	exch := basicAuth(exchID, exchSecret)
	res := x.do(t, req{contentType: formCT, basic: exch, body: exchangeForm(sub.AccessToken, "scope", "read")})
	claims, tr := x.exchanged(t, res)
	if claims["sub"] != svcID || claims["scope"] != "read" {
		t.Errorf("claims %v", claims)
	}
	// A chain: the exchanged token is itself a subject, and its act nests (RFC 8693 §4.1).
	claims, _ = x.exchanged(t, x.do(t, req{contentType: formCT, basic: exch, body: exchangeForm(tr.AccessToken)}))
	got, _ := json.Marshal(claims["act"])
	if string(got) != `{"act":{"sub":"exch"},"sub":"exch"}` || claims["sub"] != svcID || claims["scope"] != "read" {
		t.Errorf("chained claims %v (act %s)", claims, got)
	}
}

func TestMetadataListsExchangeAndPrivateKeyJWT(t *testing.T) {
	x := newXEnv(t)
	var m metadata
	body := x.do(t, req{method: http.MethodGet, path: PathMetadata}).body
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(m.GrantTypesSupported, GrantTokenExchange) || !slices.Contains(m.TokenEndpointAuthMethods, "private_key_jwt") {
		t.Errorf("metadata %+v", m)
	}
	// RFC 8414 §2: listing private_key_jwt requires the alg values accepted for the assertion.
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(jose.VerificationAlgorithms())
	for _, name := range []string{"token_endpoint_auth_signing_alg_values_supported", "introspection_endpoint_auth_signing_alg_values_supported"} {
		if string(members[name]) != string(want) {
			t.Errorf("%s = %s, want %s", name, members[name], want)
		}
	}
	plain := newEnv(t, nil)
	body = plain.do(t, req{method: http.MethodGet, path: PathMetadata}).body
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(m.GrantTypesSupported, GrantTokenExchange) || slices.Contains(m.TokenEndpointAuthMethods, "private_key_jwt") {
		t.Errorf("metadata without exchange or key clients %+v", m)
	}
	clear(members)
	if err := json.Unmarshal(body, &members); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"token_endpoint_auth_signing_alg_values_supported", "introspection_endpoint_auth_signing_alg_values_supported"} {
		if v, ok := members[name]; ok {
			t.Errorf("%s = %s without private_key_jwt clients", name, v)
		}
	}
}

// TestTokenExchangeBoundSubjectSaysWhy: the refusal of a sender-constrained subject names the
// reason, unlike the generic invalid subject answer, so the client's operator knows what to fix.
func TestTokenExchangeBoundSubjectSaysWhy(t *testing.T) {
	x := newXEnv(t)
	sub := x.subject(t, x.corp, corpIss, map[string]any{"cnf": map[string]any{"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}})
	res := x.do(t, req{contentType: formCT, basic: basicAuth(exchID, exchSecret), body: exchangeForm(sub)})
	checkOAuthError(t, res, http.StatusBadRequest, ErrInvalidGrant)
	var e struct {
		ErrorDescription string `json:"error_description"`
	}
	if err := json.Unmarshal(res.body, &e); err != nil || e.ErrorDescription != errBoundSubject.desc {
		t.Errorf("error_description %q, want %q", e.ErrorDescription, errBoundSubject.desc)
	}
}
