package issuer

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
)

func introspectForm(token string) string { return form("token", token) }

// TestIntrospection is RFC 7662 (docs/issuer.md#introspection): client authentication is required;
// a valid token of this issuer is active with every claim; anything else is exactly
// {"active":false}; every answer is no-store.
func TestIntrospection(t *testing.T) {
	e := newEnv(t, nil)
	good := e.getToken(t, svcID, svcSecret, "scope", "read write").AccessToken
	perKey := e.getToken(t, perKeyID, perKeySecret).AccessToken
	_, goodClaims := e.verifyWithServedJWKS(t, good)

	// A token signed by a key this issuer does not publish, even with a kid it does publish and
	// its own issuer URL.
	foreign := func() string {
		cfg := testConfig(e.srv.URL)
		sk, err := jose.GenerateKey("ES256", "k1")
		if err != nil {
			t.Fatal(err)
		}
		pem, _ := sk.MarshalPEM()
		cfg.Keys = []KeyConfig{{Kid: "k1", Alg: "ES256", PEM: pem}}
		cfg.Clients[0].SigningKey = ""
		cfg.Clients[3].SigningKey = ""
		other, err := New(cfg, Options{Now: e.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := other.Mint(t.Context(), MintRequest{Subject: svcID, ClientID: svcID, Audience: "billing"})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}()
	// Same keys, another issuer URL.
	otherIss := func() string {
		cfg := testConfig("https://elsewhere.example")
		other, err := New(cfg, Options{Now: e.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := other.Mint(t.Context(), MintRequest{Subject: svcID, Audience: "billing"})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}()
	// Signed by our key, with the wrong typ.
	wrongTyp := func() string {
		sk, err := jose.LoadSigningKey(testKeyPEMs()["k1"], "ES256", "k1")
		if err != nil {
			t.Fatal(err)
		}
		tok, err := sk.Sign(map[string]any{"iss": e.srv.URL, "sub": "x", "aud": "billing",
			"exp": e.clock.Now().Add(time.Hour).Unix(), "iat": e.clock.Now().Unix()}, "JWT")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}()
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tamperedPayload := strings.Replace(string(payload), `"sub":"svc"`, `"sub":"adm"`, 1)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(tamperedPayload)) + "." + parts[2]
	sig := []byte(parts[2])
	sig[5] ^= 1
	badSig := parts[0] + "." + parts[1] + "." + string(sig)
	noneAlg := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt","kid":"k1"}`)) + "." + parts[1] + "."

	auth := basicAuth(rotID, rotOld) // any registered client may introspect
	inactive := []struct{ name, token string }{
		{"garbage", "not-a-token"},
		{"three empty segments", ".."},
		{"tampered payload", tampered},
		{"bad signature", badSig},
		{"alg none", noneAlg},
		{"foreign-signed", foreign},
		{"other issuer", otherIss},
		{"typ JWT", wrongTyp},
		{"huge", strings.Repeat("a", 60000)},
	}
	for _, tc := range inactive {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do(t, req{path: PathIntrospect, contentType: formCT, basic: auth, body: introspectForm(tc.token)})
			if res.status != 200 || string(res.body) != `{"active":false}` {
				t.Errorf("got %d %s, want exactly {\"active\":false}", res.status, res.body)
			}
			checkNoStore(t, res)
		})
	}

	t.Run("valid", func(t *testing.T) {
		for _, tok := range []string{good, perKey} {
			res := e.do(t, req{path: PathIntrospect, contentType: formCT, basic: auth, body: introspectForm(tok)})
			checkNoStore(t, res)
			var got map[string]any
			dec := json.NewDecoder(strings.NewReader(string(res.body)))
			dec.UseNumber()
			if res.status != 200 || dec.Decode(&got) != nil || got["active"] != true {
				t.Fatalf("got %d %s", res.status, res.body)
			}
			if tok != good {
				continue
			}
			delete(got, "active")
			if !reflect.DeepEqual(got, goodClaims.Raw) {
				t.Errorf("claims\n got %v\nwant %v", got, goodClaims.Raw)
			}
		}
	})
	t.Run("valid, JSON body and client_secret_post", func(t *testing.T) {
		res := e.do(t, req{path: PathIntrospect, contentType: "application/json",
			body: jsonBody(t, map[string]any{"token": good, "client_id": svcID, "client_secret": svcSecret})})
		if res.status != 200 || !strings.Contains(string(res.body), `"active":true`) {
			t.Fatalf("got %d %s", res.status, res.body)
		}
	})

	errs := []struct {
		name   string
		q      req
		status int
		code   string
	}{
		{"no client authentication", req{path: PathIntrospect, contentType: formCT, body: introspectForm(good)}, 401, ErrInvalidClient},
		{"bearer instead of client auth", req{path: PathIntrospect, contentType: formCT, rawAuth: []string{"Bearer " + good}, body: introspectForm(good)}, 401, ErrInvalidClient},
		{"wrong secret", req{path: PathIntrospect, contentType: formCT, basic: basicAuth(svcID, "x"), body: introspectForm(good)}, 401, ErrInvalidClient},
		{"unknown client", req{path: PathIntrospect, contentType: formCT, basic: basicAuth("ghost", "x"), body: introspectForm(good)}, 401, ErrInvalidClient},
		{"missing token", req{path: PathIntrospect, contentType: formCT, basic: auth}, 400, ErrInvalidRequest},
		{"repeated token", req{path: PathIntrospect, contentType: formCT, basic: auth, body: introspectForm(good) + "&token=x"}, 400, ErrInvalidRequest},
		{"GET", req{path: PathIntrospect, method: http.MethodGet, basic: auth}, 405, ErrInvalidRequest},
		{"secret in the query", req{path: PathIntrospect, query: "client_secret=x", contentType: formCT, basic: auth, body: introspectForm(good)}, 400, ErrInvalidRequest},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			checkOAuthError(t, e.do(t, tc.q), tc.status, tc.code)
		})
	}

	t.Run("expired", func(t *testing.T) {
		// svc tokens live 5 minutes; exp is exclusive.
		e.clock.Advance(5*time.Minute - time.Second)
		res := e.do(t, req{path: PathIntrospect, contentType: formCT, basic: auth, body: introspectForm(good)})
		if !strings.Contains(string(res.body), `"active":true`) {
			t.Fatalf("one second before exp: %s", res.body)
		}
		e.clock.Advance(time.Second)
		res = e.do(t, req{path: PathIntrospect, contentType: formCT, basic: auth, body: introspectForm(good)})
		if res.status != 200 || string(res.body) != `{"active":false}` {
			t.Errorf("at exp: %d %s", res.status, res.body)
		}
	})
}

// TestJWKSEndpoint: public parts only, every configured key with kid/alg/use, cacheable, JSON.
func TestJWKSEndpoint(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Options) {
		c.Keys = []KeyConfig{keyConfig("k1"), keyConfig("rsa"), keyConfig("ed"), keyConfig("ps"), keyConfig("es384")}
		c.Clients[3].SigningKey = "rsa"
	})
	res := e.do(t, req{method: http.MethodGet, path: PathJWKS})
	if res.status != 200 || res.header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %q", res.status, res.header.Get("Content-Type"))
	}
	if cc := res.header.Get("Cache-Control"); !strings.Contains(cc, "max-age=300") {
		t.Errorf("Cache-Control = %q", cc)
	}
	var set struct{ Keys []map[string]any }
	if err := json.Unmarshal(res.body, &set); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"k1": "ES256", "rsa": "RS256", "ed": "EdDSA", "ps": "PS256", "es384": "ES384"}
	if len(set.Keys) != len(want) {
		t.Fatalf("%d keys, want %d", len(set.Keys), len(want))
	}
	for _, k := range set.Keys {
		kid, _ := k["kid"].(string)
		if want[kid] == "" || k["alg"] != want[kid] || k["use"] != "sig" {
			t.Errorf("key %v", k)
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[private]; ok {
				t.Errorf("key %s publishes private member %q", kid, private)
			}
		}
	}
	if !reflect.DeepEqual(e.iss.KeyIDs(), []string{"k1", "rsa", "ed", "ps", "es384"}) || string(e.iss.PublicJWKS()) != string(res.body) {
		t.Errorf("KeyIDs %v / PublicJWKS differ from the served set", e.iss.KeyIDs())
	}
	// Every algorithm signs tokens that verify against the served set.
	for _, kid := range []string{"rsa", "ed", "ps", "es384"} {
		cfgKeys := []KeyConfig{keyConfig(kid), keyConfig("k1")}
		e2 := newEnv(t, func(c *Config, _ *Options) {
			c.Keys = cfgKeys
			c.Clients[3].SigningKey = ""
		})
		u, _ := e2.verifyWithServedJWKS(t, e2.getToken(t, svcID, svcSecret).AccessToken)
		if u.KeyID() != kid || u.Algorithm() != want[kid] {
			t.Errorf("%s: header kid %q alg %q", kid, u.KeyID(), u.Algorithm())
		}
	}
	// HEAD works, other methods do not.
	if res := e.do(t, req{method: http.MethodHead, path: PathJWKS}); res.status != 200 || len(res.body) != 0 {
		t.Errorf("HEAD: %d", res.status)
	}
	if res := e.do(t, req{method: http.MethodPost, path: PathJWKS}); res.status != 405 || res.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d Allow %q", res.status, res.header.Get("Allow"))
	}
}

// TestPerClientKeyAndRotation: a client naming a kid gets tokens signed by it; the first key
// signs the others; after a rotation (new key moved first, old key still published) tokens of
// both keys verify against the served JWKS and introspect as active, and once the old key is
// unpublished its tokens are inactive.
func TestPerClientKeyAndRotation(t *testing.T) {
	before := newEnv(t, nil) // keys [k1, k2]
	tokK1 := before.getToken(t, svcID, svcSecret).AccessToken
	tokK2 := before.getToken(t, perKeyID, perKeySecret).AccessToken
	if u, _ := before.verifyWithServedJWKS(t, tokK1); u.KeyID() != "k1" {
		t.Errorf("default client signed by %q, want k1", u.KeyID())
	}
	if u, _ := before.verifyWithServedJWKS(t, tokK2); u.KeyID() != "k2" {
		t.Errorf("per-client key: signed by %q, want k2", u.KeyID())
	}

	after := newEnv(t, func(c *Config, o *Options) { // rotated: k2 first, k1 still published
		c.IssuerURL = before.srv.URL // the same issuer, restarted with the new configuration
		c.Keys = []KeyConfig{keyConfig("k2"), keyConfig("k1")}
		c.Clients[3].SigningKey = ""
		o.Now = before.clock.Now
	})
	tokAfter := after.getToken(t, svcID, svcSecret).AccessToken
	if u, _ := after.verifyWithServedJWKS(t, tokAfter); u.KeyID() != "k2" {
		t.Errorf("after rotation signed by %q, want k2", u.KeyID())
	}
	before.verifyWithServedJWKS(t, tokAfter) // the new key was published before it signed
	after.verifyWithServedJWKS(t, tokK1)     // the old key is still published
	for _, tok := range []string{tokK1, tokK2, tokAfter} {
		// rot has introspect: true; svc could not introspect perkey's token (RFC 7662 §4).
		res := after.do(t, req{path: PathIntrospect, contentType: formCT, basic: basicAuth(rotID, rotNew), body: introspectForm(tok)})
		if !strings.Contains(string(res.body), `"active":true`) {
			t.Errorf("after rotation: %s", res.body)
		}
	}

	retired := newEnv(t, func(c *Config, o *Options) { // k1 unpublished
		c.IssuerURL = before.srv.URL
		c.Keys = []KeyConfig{keyConfig("k2")}
		c.Clients[3].SigningKey = ""
		o.Now = before.clock.Now
	})
	res := retired.do(t, req{path: PathIntrospect, contentType: formCT, basic: basicAuth(svcID, svcSecret), body: introspectForm(tokK1)})
	if string(res.body) != `{"active":false}` {
		t.Errorf("token of an unpublished key: %s", res.body)
	}
	if got := retired.iss.KeyIDs(); !reflect.DeepEqual(got, []string{"k2"}) {
		t.Errorf("KeyIDs = %v", got)
	}
}

// TestGenerateKey: generate: true makes a working ephemeral key and logs a loud warning.
func TestGenerateKey(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Options) {
		c.Keys = []KeyConfig{{Kid: "dev", Alg: "ES256", Generate: true}}
		c.Clients[3].SigningKey = ""
	})
	u, _ := e.verifyWithServedJWKS(t, e.getToken(t, svcID, svcSecret).AccessToken)
	if u.KeyID() != "dev" {
		t.Errorf("kid %q", u.KeyID())
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "EPHEMERAL SIGNING KEY") || !strings.Contains(logs, "kid=dev") {
		t.Errorf("no loud warning in logs: %s", logs)
	}
}

// TestMetadata: RFC 8414 (and the same document at the OpenID path); issuer equals the iss of the
// tokens; the advertised endpoints work: x/oauth2-style discovery, then a token from the
// advertised token endpoint verified with the advertised jwks_uri.
func TestMetadata(t *testing.T) {
	e := newEnv(t, nil)
	var docs [][]byte
	for _, path := range []string{PathMetadata, PathOpenIDConfiguration} {
		res := e.do(t, req{method: http.MethodGet, path: path})
		if res.status != 200 || res.header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d", path, res.status)
		}
		docs = append(docs, res.body)
	}
	if string(docs[0]) != string(docs[1]) {
		t.Error("the two discovery documents differ")
	}
	var m map[string]any
	if err := json.Unmarshal(docs[0], &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"issuer":                                e.srv.URL,
		"token_endpoint":                        e.srv.URL + "/oauth2/token",
		"jwks_uri":                              e.srv.URL + "/.well-known/jwks.json",
		"introspection_endpoint":                e.srv.URL + "/oauth2/introspect",
		"grant_types_supported":                 []any{"client_credentials"},
		"response_types_supported":              []any{},
		"token_endpoint_auth_methods_supported": []any{"client_secret_basic", "client_secret_post"},
		"introspection_endpoint_auth_methods_supported": []any{"client_secret_basic", "client_secret_post"},
		"scopes_supported":                          []any{"admin", "read", "write"},
		"access_token_signing_alg_values_supported": []any{"ES256"},
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("metadata\n got %v\nwant %v", m, want)
	}
	// Follow the document as a client would.
	tokURL, _ := m["token_endpoint"].(string)
	res := e.do(t, req{path: strings.TrimPrefix(tokURL, e.srv.URL), contentType: formCT, basic: basicAuth(svcID, svcSecret),
		body: form("grant_type", "client_credentials")})
	_, c := e.verifyWithServedJWKS(t, checkTokenResponse(t, res).AccessToken)
	if c.Issuer != m["issuer"] {
		t.Errorf("iss %q != metadata issuer %v", c.Issuer, m["issuer"])
	}
	// An issuer URL with a trailing slash keeps it in iss and metadata; endpoints do not double it.
	e2 := newEnv(t, func(c *Config, _ *Options) { c.IssuerURL = "https://tg.example.com/" })
	var m2 map[string]any
	_ = json.Unmarshal(e2.do(t, req{method: http.MethodGet, path: PathMetadata}).body, &m2)
	if m2["issuer"] != "https://tg.example.com/" || m2["token_endpoint"] != "https://tg.example.com/oauth2/token" {
		t.Errorf("trailing slash: %v", m2)
	}
	if got := e.iss.Audiences(); !reflect.DeepEqual(got, []string{"bare-api", "billing", "orders"}) {
		t.Errorf("Audiences() = %v", got)
	}
}

// TestIntrospectionActiveCannotBeFaked: a static claim named "active" does not change the answer's
// "active" member.
func TestIntrospectionActiveCannotBeFaked(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *Options) { c.Clients[0].Claims = map[string]any{"active": false} })
	tok := e.getToken(t, svcID, svcSecret).AccessToken
	res := e.do(t, req{path: PathIntrospect, contentType: formCT, basic: basicAuth(svcID, svcSecret), body: introspectForm(tok)})
	var got map[string]any
	if err := json.Unmarshal(res.body, &got); err != nil || got["active"] != true {
		t.Errorf("got %s", res.body)
	}
}

// TestIntrospectionOwnTokensOnly is issue 9 finding 12 (RFC 7662 §4; docs/issuer.md#introspection):
// a client without `introspect: true` learns only about its own tokens; another client's valid
// token, or a token minted for a route with no client of ours, is {"active":false} to it. A
// client with `introspect: true` (rot) sees every valid token.
func TestIntrospectionOwnTokensOnly(t *testing.T) {
	e := newEnv(t, nil)
	svcTok := e.getToken(t, svcID, svcSecret).AccessToken
	perKeyTok := e.getToken(t, perKeyID, perKeySecret).AccessToken
	minted, _, err := e.iss.Mint(t.Context(), MintRequest{Subject: "u", Audience: "billing"})
	if err != nil {
		t.Fatal(err)
	}
	mintedAsSvc, _, err := e.iss.Mint(t.Context(), MintRequest{Subject: "u", ClientID: svcID, Audience: "billing"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		id, secret string
		token      string
		active     bool
	}{
		{"own token", svcID, svcSecret, svcTok, true},
		{"another client's token", svcID, svcSecret, perKeyTok, false},
		{"the other way round", perKeyID, perKeySecret, svcTok, false},
		{"a minted token without client_id", svcID, svcSecret, minted, false},
		{"a minted token naming the client", svcID, svcSecret, mintedAsSvc, true},
		{"introspect: true, another client's token", rotID, rotNew, svcTok, true},
		{"introspect: true, minted token", rotID, rotOld, minted, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do(t, req{path: PathIntrospect, contentType: formCT, basic: basicAuth(tc.id, tc.secret), body: introspectForm(tc.token)})
			if res.status != http.StatusOK {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			checkNoStore(t, res)
			if !tc.active {
				if string(res.body) != `{"active":false}` {
					t.Fatalf("answer %s, want exactly {\"active\":false}", res.body)
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal(res.body, &got); err != nil || got["active"] != true || got["jti"] == nil {
				t.Fatalf("answer %s, want active with the claims", res.body)
			}
		})
	}
}
