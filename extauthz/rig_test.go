package extauthz_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tokengate/tokengate/extauthz"
	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/jwks/jwkstest"
	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/internal/upstream"
	"github.com/tokengate/tokengate/internal/verify"
	"github.com/tokengate/tokengate/issuer"
)

const (
	corpAud = "api://gateway"
	selfURL = "https://tokengate.test"
)

// publicJWKS is the JWK Set publishing keys' public halves.
func publicJWKS(t testing.TB, keys ...*jose.SigningKey) []byte {
	t.Helper()
	b, err := jose.PublicJWKS(keys)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func genKey(t testing.TB, alg, kid string) *jose.SigningKey {
	t.Helper()
	k, err := jose.GenerateKey(alg, kid)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rig is one Authorizer behind a real gRPC server on a loopback port.
type rig struct {
	t        testing.TB
	corpURL  string // the corp provider's issuer
	deadURL  string // a provider whose JWKS never answers
	keys     map[string]*jose.SigningKey
	jwks     *jwkstest.Server
	iss      *issuer.Issuer
	verifier *verify.Verifier
	tokens   *upstream.Cache
	authz    *extauthz.Authorizer
	client   authv3.AuthorizationClient
}

// testRoutes covers every selection rule, both simple upstream modes and a mint route.
func testRoutes(r *rig) []extauthz.Route {
	return []extauthz.Route{
		{Name: "billing", Authority: "billing.example.com", PathPrefix: "/api/", Methods: []string{"GET", "POST"},
			Auth: extauthz.AuthJWT, Providers: []string{"corp", "self"}, Scopes: []string{"billing.read", "billing.write"},
			Claims: map[string]any{"tenant": "acme"}, Upstream: extauthz.UpstreamPassthrough,
			ForwardClaims: map[string]string{"x-subject": "sub", "x-scopes": "scope", "x-groups": "groups", "x-level": "level", "x-missing": "nope"}},
		{Name: "wild", Authority: "*.example.com", Auth: extauthz.AuthJWT, Providers: []string{"corp"}, Upstream: extauthz.UpstreamRemove},
		{Name: "mint", PathPrefix: "/mint/", Auth: extauthz.AuthJWT, Providers: []string{"corp", "self"},
			Upstream: extauthz.UpstreamToken, Source: r.mint("mint", issuer.MintRequest{Audience: "billing", Scopes: []string{"billing.read"}, TTL: 5 * time.Minute})},
		{Name: "public", PathPrefix: "/public/", Auth: extauthz.AuthNone, Upstream: extauthz.UpstreamRemove},
		{Name: "jwt", PathPrefix: "/", Auth: extauthz.AuthJWT, Providers: []string{"corp"}, Upstream: extauthz.UpstreamPassthrough},
		{Name: "dead", PathPrefix: "/never-matches-first", Auth: extauthz.AuthJWT, Providers: []string{"dead"}, Upstream: extauthz.UpstreamPassthrough},
	}
}

func newRig(t testing.TB, cacheSize int) *rig {
	t.Helper()
	return newRigWith(t, testRoutes, cacheSize)
}

func newRigWithRoutes(t testing.TB, routes []extauthz.Route, cacheSize int) *rig {
	t.Helper()
	return newRigWith(t, func(*rig) []extauthz.Route { return routes }, cacheSize)
}

// newRigWith builds the rig, then its routes, which may use the rig's issuer and token cache.
func newRigWith(t testing.TB, routes func(*rig) []extauthz.Route, cacheSize int) *rig {
	t.Helper()
	r := &rig{t: t, keys: map[string]*jose.SigningKey{}}
	for _, a := range []struct{ alg, kid string }{{"RS256", "rs"}, {"ES256", "es"}, {"PS256", "ps"}, {"EdDSA", "ed"}} {
		r.keys[a.kid] = genKey(t, a.alg, a.kid)
	}
	r.jwks = jwkstest.NewServer(t, publicJWKS(t, r.keys["rs"], r.keys["es"], r.keys["ps"], r.keys["ed"]))
	r.corpURL = r.jwks.URL + "/"
	dead := jwkstest.NewServer(t, publicJWKS(t, genKey(t, "ES256", "dead")))
	dead.SetMode(jwkstest.Status500)
	r.deadURL = dead.URL + "/"

	iss, err := issuer.New(issuer.Config{
		IssuerURL: selfURL, TokenTTL: time.Hour,
		Keys:    []issuer.KeyConfig{{Kid: "self-1", Alg: "ES256", Generate: true}},
		Clients: []issuer.Client{{ID: "svc", SecretHashes: [][32]byte{sha256.Sum256([]byte("svc-secret"))}, Scopes: []string{"billing.read"}, Audiences: []string{"gw"}}},
	}, issuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.iss = iss
	ctx := context.Background()
	v, err := verify.New(ctx, verify.Options{
		Providers: []verify.Provider{
			{Name: "corp", Issuer: r.corpURL, JWKSURI: r.jwks.JWKSURL(), Audiences: []string{corpAud},
				Algorithms: []string{"RS256", "ES256", "PS256", "EdDSA"}, ClockSkew: 30 * time.Second, MaxTokenLifetime: 24 * time.Hour},
			{Name: "self", Issuer: selfURL, StaticJWKS: iss.PublicJWKS(), Algorithms: []string{"ES256"}, ClockSkew: 30 * time.Second,
				Audiences: iss.Audiences()}, // as internal/app wires it: the clients' audiences (docs/issuer.md#minting-for-mint-routes)
			{Name: "dead", Issuer: r.deadURL, JWKSURI: dead.JWKSURL(), Audiences: []string{corpAud}},
		},
		CacheSize: cacheSize, MaxTokenBytes: 8192, HTTPClient: http.DefaultClient,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	r.verifier = v
	testkit.WaitFor(t, "the keys of every provider but dead", 10*time.Second, 5*time.Millisecond, func() bool {
		for _, m := range v.Missing() {
			if !strings.Contains(m, "dead") {
				return false
			}
		}
		return true
	})
	r.tokens = upstream.NewCache(upstream.Options{Size: 1000})
	t.Cleanup(r.tokens.Close)
	r.authz, err = extauthz.New(routes(r), extauthz.Deps{Verifier: v, MaxTokenBytes: 8192})
	if err != nil {
		t.Fatal(err)
	}
	r.client = serveGRPC(t, extauthz.NewCheckServer(r.authz, nil))
	return r
}

// mint is a mint route's source with the rig's issuer and token cache, as internal/app builds it.
func (r *rig) mint(route string, tmpl issuer.MintRequest) upstream.Source {
	return upstream.NewMintSource(r.tokens, route, r.iss, tmpl)
}

func serveGRPC(t testing.TB, s authv3.AuthorizationServer) authv3.AuthorizationClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, s)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// token signs claims for the corp provider with the named key; defaults make a valid token.
func (r *rig) token(kid string, claims map[string]any) string {
	r.t.Helper()
	now := time.Now()
	c := map[string]any{"iss": r.corpURL, "aud": corpAud, "sub": "alice", "iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(), "scope": "billing.read billing.write", "tenant": "acme", "client_id": "web"}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	tok, err := r.keys[kid].Sign(c, "JWT")
	if err != nil {
		r.t.Fatal(err)
	}
	return tok
}

type reqOpt func(*authv3.CheckRequest)

func withRoute(name string) reqOpt {
	return func(c *authv3.CheckRequest) { c.Attributes.ContextExtensions = map[string]string{"route": name} }
}

func checkReq(authority, path, method string, headers map[string]string, opts ...reqOpt) *authv3.CheckRequest {
	h := map[string]string{":authority": authority, ":path": path, ":method": method}
	for k, v := range headers {
		h[k] = v
	}
	c := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Host: authority, Path: path, Method: method, Headers: h}}}}
	for _, o := range opts {
		o(c)
	}
	return c
}

func (r *rig) check(req *authv3.CheckRequest) *authv3.CheckResponse {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := r.client.Check(ctx, req)
	if err != nil {
		r.t.Fatalf("Check returned an RPC error (it must never): %v", err)
	}
	return resp
}

// b64 is base64url without padding, for hand-made attack tokens.
func b64(v any) string {
	var b []byte
	switch x := v.(type) {
	case []byte:
		b = x
	case string:
		b = []byte(x)
	default:
		b, _ = json.Marshal(x)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// hmacToken forges an HS256 token keyed with secret: the HS/RS confusion attack.
func hmacToken(header, claims map[string]any, secret []byte) string {
	in := b64(header) + "." + b64(claims)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(in))
	return in + "." + b64(m.Sum(nil))
}

// embeddedJWKToken signs with an attacker key and embeds that key in the header (CVE-2018-0114).
func embeddedJWKToken(t testing.TB, claims map[string]any) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := k.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	x, y := pub[1:33], pub[33:]
	header := map[string]any{"alg": "ES256", "kid": "es", "jwk": map[string]any{"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)}}
	in := b64(header) + "." + b64(claims)
	sum := sha256.Sum256([]byte(in))
	rr, ss, err := ecdsa.Sign(rand.Reader, k, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + b64(append(rr.FillBytes(make([]byte, 32)), ss.FillBytes(make([]byte, 32))...))
}
