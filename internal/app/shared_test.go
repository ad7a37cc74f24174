package app_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/testenv"
)

// TestReplicasShareDPoPAndIntrospectionThroughRedis: two tokengate servers with one cache.redis
// are one fleet for RFC 9449 §11.1 (a DPoP proof replica A accepted is refused by replica B), for
// RFC 7523 §3 item 7 (a client assertion A's token endpoint accepted is refused by B's) and for
// RFC 7662 answers (an opaque token introspected by A is served by B without a second call);
// with Redis gone each still works alone.
func TestReplicasShareDPoPAndIntrospectionThroughRedis(t *testing.T) {
	redis := testkit.StartRedis(t)
	idp, err := testenv.NewIdP("", map[string]string{"gateway": "introspect-secret-0123"})
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	keyFile := writeConfig(t, "0123456789abcdef0123456789abcdef") // 32 raw bytes (test value)
	clientKey, err := jose.GenerateKey("ES256", "pk-1")
	if err != nil {
		t.Fatal(err)
	}
	clientJWKS, err := jose.PublicJWKS([]*jose.SigningKey{clientKey})
	if err != nil {
		t.Fatal(err)
	}
	const issuerURL = "https://tokengate.test"
	cfg := fmt.Sprintf(`issuer:
  issuer_url: %[5]s
  signing_keys: [{kid: k1, alg: ES256, generate: true}]
  clients: [{client_id: pk, jwks: %[6]s, scopes: [read], audiences: [orders]}]
providers:
  - {name: corp, issuer: "%[1]s", jwks_uri: "%[1]s/.well-known/jwks.json", audiences: ["api://gateway"], require_binding: dpop}
  - name: curity
    issuer: "%[1]s"
    audiences: ["api://gateway"]
    introspection: {url: "%[2]s", client_id: gateway, client_secret: introspect-secret-0123}
routes:
  - {name: dpop, match: {path_prefix: /dpop/}, authenticate: {jwt: {providers: [corp]}}, upstream: {passthrough: {}}}
  - {name: opaque, authenticate: {jwt: {providers: [curity]}}, upstream: {passthrough: {}}}
cache:
  redis: {addr: "%[3]s", key_prefix: "tg-shared:", encryption_key_file: "%[4]s"}
`, idp.URL(), idp.IntrospectionURL(), redis.Addr(), keyFile, issuerURL, clientJWKS)
	a1, _, _ := start(t, writeConfig(t, cfg))
	a2, _, _ := start(t, writeConfig(t, cfg))
	testenvWaitReady(t, a1.HTTPAddr())
	testenvWaitReady(t, a2.HTTPAddr())

	k, err := jose.GenerateKey("ES256", "client")
	if err != nil {
		t.Fatal(err)
	}
	jkt, err := k.Thumbprint()
	if err != nil {
		t.Fatal(err)
	}
	bound, err := idp.CallerToken(map[string]any{"aud": "api://gateway", "sub": "alice", "cnf": map[string]any{"jkt": jkt}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	newProof := func() string {
		t.Helper()
		n++
		p, err := k.SignDPoPProof(map[string]any{"jti": fmt.Sprintf("proof-%d-%d", time.Now().UnixNano(), n), "htm": "GET",
			"htu": "https://api.example.com/dpop/orders", "iat": time.Now().Unix(), "ath": jose.AccessTokenHash(bound)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	authz := func(addr, path, auth, proof string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+"/authz"+path, nil)
		req.Header.Set("Authorization", auth)
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("X-Forwarded-Host", "api.example.com")
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Uri", path)
		if proof != "" {
			req.Header.Set("DPoP", proof)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	expect := func(what string, resp *http.Response, want int) {
		t.Helper()
		if resp.StatusCode != want {
			t.Fatalf("%s: status %d, want %d (%s)", what, resp.StatusCode, want, resp.Header.Get("WWW-Authenticate"))
		}
	}

	p := newProof()
	expect("proof on replica A", authz(a1.HTTPAddr(), "/dpop/orders", "DPoP "+bound, p), http.StatusOK)
	expect("the same proof on replica B", authz(a2.HTTPAddr(), "/dpop/orders", "DPoP "+bound, p), http.StatusUnauthorized)
	expect("a fresh proof on replica B", authz(a2.HTTPAddr(), "/dpop/orders", "DPoP "+bound, newProof()), http.StatusOK)

	assertion := func() string {
		t.Helper()
		n++
		now := time.Now()
		a, err := clientKey.Sign(map[string]any{"iss": "pk", "sub": "pk", "aud": issuerURL, "jti": fmt.Sprintf("assertion-%d-%d", now.UnixNano(), n),
			"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}, "JWT")
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	token := func(addr, assertion string) *http.Response {
		t.Helper()
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"pk"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
		resp, err := http.PostForm("http://"+addr+"/oauth2/token", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	as := assertion()
	expect("assertion on replica A", token(a1.HTTPAddr(), as), http.StatusOK)
	expect("the same assertion on replica B", token(a2.HTTPAddr(), as), http.StatusUnauthorized)
	expect("a fresh assertion on replica B", token(a2.HTTPAddr(), assertion()), http.StatusOK)

	opaque := idp.OpaqueToken(map[string]any{"sub": "bob", "aud": "api://gateway", "scope": "read"})
	before := idp.IntrospectionRequests()
	expect("opaque on replica A", authz(a1.HTTPAddr(), "/x", "Bearer "+opaque, ""), http.StatusOK)
	expect("opaque on replica B", authz(a2.HTTPAddr(), "/x", "Bearer "+opaque, ""), http.StatusOK)
	if got := idp.IntrospectionRequests() - before; got != 1 {
		t.Fatalf("%d introspection calls from two replicas, want 1", got)
	}

	redis.Kill()
	for _, a := range []string{a1.HTTPAddr(), a2.HTTPAddr()} {
		p := newProof()
		expect("Redis down: a fresh proof", authz(a, "/dpop/orders", "DPoP "+bound, p), http.StatusOK)
		expect("Redis down: its replay on the same replica", authz(a, "/dpop/orders", "DPoP "+bound, p), http.StatusUnauthorized)
		as := assertion()
		expect("Redis down: a fresh assertion", token(a, as), http.StatusOK)
		expect("Redis down: its replay on the same replica", token(a, as), http.StatusUnauthorized)
		expect("Redis down: a new opaque token", authz(a, "/x", "Bearer "+idp.OpaqueToken(map[string]any{"sub": "carol", "aud": "api://gateway"}), ""), http.StatusOK)
	}
}
