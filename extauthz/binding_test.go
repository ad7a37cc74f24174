package extauthz_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/tokengate/tokengate/extauthz"
	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/testkit"
)

const bindHost = "api.example.com"

// The challenges of the bound-token routes: the corp provider's DPoP allow-list is ES256 and
// RS256 (bindingRig), so a PS256 proof is refused although corp's tokens may be PS256.
const (
	dpopChallenge = `DPoP realm="tokengate", algs="ES256 RS256"`
	dpopProofErr  = dpopChallenge + `, error="invalid_dpop_proof", error_description="*`
)

var (
	wantDPoPProof = want{code.Code_UNAUTHENTICATED, 401, dpopProofErr, "invalid_dpop_proof"}
	// A bad token or key sent with the DPoP scheme: the error is on the DPoP challenge.
	wantDPoPToken = want{code.Code_UNAUTHENTICATED, 401, dpopChallenge + `, error="invalid_token", error_description="*`, "invalid_token"}
	// A bound token sent with the Bearer scheme: the error is on the Bearer challenge.
	wantBearerBound = want{code.Code_UNAUTHENTICATED, 401, dpopChallenge + `, Bearer realm="tokengate", error="invalid_token", error_description="*`, "invalid_token"}
	// A dpop-only route names no Bearer challenge.
	wantDPoPOnly = want{code.Code_UNAUTHENTICATED, 401, dpopChallenge + `, error="invalid_token", error_description="*`, "invalid_token"}
)

type bindingRig struct {
	*rig
	authz   *extauthz.Authorizer
	client  authv3.AuthorizationClient
	fa      *httptest.Server
	metrics *metrics.Metrics
	logs    *bytes.Buffer
}

func newBindingRig(t *testing.T) *bindingRig {
	t.Helper()
	r := newRig(t, 1000)
	routes := []extauthz.Route{
		{Name: "dpop", PathPrefix: "/dpop/", Auth: extauthz.AuthJWT, Providers: []string{"corp"}, Upstream: extauthz.UpstreamPassthrough, RequireBinding: extauthz.BindingDPoP},
		{Name: "mtls", PathPrefix: "/mtls/", Auth: extauthz.AuthJWT, Providers: []string{"corp"}, Upstream: extauthz.UpstreamPassthrough, RequireBinding: extauthz.BindingMTLS},
		{Name: "any", PathPrefix: "/any/", Auth: extauthz.AuthJWT, Providers: []string{"corp"}, Upstream: extauthz.UpstreamPassthrough, RequireBinding: extauthz.BindingAny},
		{Name: "open", PathPrefix: "/", Auth: extauthz.AuthJWT, Providers: []string{"corp"}, Upstream: extauthz.UpstreamPassthrough},
	}
	b := &bindingRig{rig: r, metrics: metrics.New(), logs: &bytes.Buffer{}}
	var err error
	b.authz, err = extauthz.New(routes, extauthz.Deps{Verifier: r.verifier, MaxTokenBytes: 8192, Metrics: b.metrics,
		Logger:   slog.New(slog.NewTextHandler(b.logs, nil)),
		Bindings: map[string]extauthz.Binding{"corp": {Algorithms: []string{"ES256", "RS256"}, ClockSkew: 5 * time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	b.client = serveGRPC(t, extauthz.NewCheckServer(b.authz, nil))
	b.fa = httptest.NewServer(extauthz.NewForwardAuth(b.authz, nil, extauthz.ForwardAuthOptions{
		Headers: extauthz.ForwardAuthHeadersXForwarded, ClientCertHeader: "x-client-cert"}))
	t.Cleanup(b.fa.Close)
	return b
}

func (b *bindingRig) checkGRPC(t *testing.T, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	saved := b.rig.client
	b.rig.client = b.client
	defer func() { b.rig.client = saved }()
	return b.rig.check(req)
}

// proof signs a DPoP proof for GET https://api.example.com/dpop/orders with token's ath; edit
// changes its claims (nil deletes one), header its protected header.
func proof(t testing.TB, k *jose.SigningKey, token string, edit, header map[string]any) string {
	t.Helper()
	c := map[string]any{"jti": randomID(t), "htm": "GET", "htu": "https://" + bindHost + "/dpop/orders",
		"iat": time.Now().Unix(), "ath": jose.AccessTokenHash(token)}
	for n, v := range edit {
		if v == nil {
			delete(c, n)
		} else {
			c[n] = v
		}
	}
	p, err := k.SignDPoPProof(c, header)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func randomID(t testing.TB) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func thumbprint(t testing.TB, k *jose.SigningKey) string {
	t.Helper()
	jkt, err := k.Thumbprint()
	if err != nil {
		t.Fatal(err)
	}
	return jkt
}

// bindReq is a Check of GET https://api.example.com<path> with these headers, as Envoy sends
// it with encode_raw_headers (a header_map, repeated headers apart) when raw is set.
type bindReq struct {
	path   string
	auth   string
	dpop   []string
	cert   string // URL-encoded PEM
	scheme string // default https
	method string
	raw    bool
}

func (q bindReq) grpc() *authv3.CheckRequest {
	method, scheme := q.method, q.scheme
	if method == "" {
		method = "GET"
	}
	if scheme == "" {
		scheme = "https"
	}
	h := map[string]string{}
	if q.auth != "" {
		h["authorization"] = q.auth
	}
	if len(q.dpop) > 0 {
		h["dpop"] = strings.Join(q.dpop, ",")
	}
	c := checkReq(bindHost, q.path, method, h)
	c.Attributes.Request.Http.Scheme = scheme
	if q.raw {
		hm := &corev3.HeaderMap{}
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: ":authority", Value: bindHost})
		if q.auth != "" {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: "authorization", Value: q.auth})
		}
		for _, p := range q.dpop {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: "dpop", RawValue: []byte(p)})
		}
		c.Attributes.Request.Http.Headers = nil
		c.Attributes.Request.Http.HeaderMap = hm
	}
	if q.cert != "" {
		c.Attributes.Source = &authv3.AttributeContext_Peer{Certificate: q.cert}
	}
	return c
}

// TestBoundTokensGRPC: every acceptance and refusal of DPoP-bound (RFC 9449) and
// certificate-bound (RFC 8705) tokens through the real gRPC server, with ES256 and RS256 proof
// keys.
func TestBoundTokensGRPC(t *testing.T) {
	b := newBindingRig(t)
	mine, other := testkit.SelfSigned(t, testkit.LeafSpec{CN: "client"}), testkit.SelfSigned(t, testkit.LeafSpec{CN: "other"})
	certPEM, otherPEM, x5t := string(mine.CertPEM), string(other.CertPEM), mine.X5T()
	mtlsTok := b.token("es", map[string]any{"cnf": map[string]any{"x5t#S256": x5t}})
	plain := b.token("rs", nil)
	ps, err := jose.GenerateKey("PS256", "ps-client")
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range []string{"ES256", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			k, err := jose.GenerateKey(alg, "client")
			if err != nil {
				t.Fatal(err)
			}
			other, err := jose.GenerateKey(alg, "other")
			if err != nil {
				t.Fatal(err)
			}
			tok := b.token("rs", map[string]any{"cnf": map[string]any{"jkt": thumbprint(t, k)}})
			bothTok := b.token("rs", map[string]any{"cnf": map[string]any{"jkt": thumbprint(t, k), "x5t#S256": x5t}})
			psTok := b.token("rs", map[string]any{"cnf": map[string]any{"jkt": thumbprint(t, ps)}})
			pub, err := k.PublicJWK()
			if err != nil {
				t.Fatal(err)
			}
			otherPub, err := other.PublicJWK()
			if err != nil {
				t.Fatal(err)
			}
			private := map[string]any{"d": "AAAA"}
			for n, v := range pub {
				private[n] = v
			}
			good := func() []string { return []string{proof(t, k, tok, nil, nil)} }
			dp := "DPoP " + tok
			hs := hmacToken(map[string]any{"alg": "HS256", "typ": "dpop+jwt", "jwk": pub},
				map[string]any{"jti": "x", "htm": "GET", "htu": "https://" + bindHost + "/dpop/orders", "iat": time.Now().Unix(), "ath": jose.AccessTokenHash(tok)}, []byte("k"))
			none := b64(map[string]any{"alg": "none", "typ": "dpop+jwt", "jwk": pub}) + "." + b64(map[string]any{"jti": "y"}) + "."
			cases := []struct {
				name string
				req  bindReq
				want want
			}{
				{"DPoP-bound token with its proof", bindReq{path: "/dpop/orders", auth: dp, dpop: good()}, allow},
				{"proof over a raw header map", bindReq{path: "/dpop/orders", auth: dp, dpop: good(), raw: true}, allow},
				{"htu in another spelling, query ignored", bindReq{path: "/dpop/orders?page=2", auth: dp,
					dpop: []string{proof(t, k, tok, map[string]any{"htu": "HTTPS://API.Example.com:443/dpop/./orders"}, nil)}}, allow},
				{"scheme is case-insensitive", bindReq{path: "/dpop/orders", auth: "dpop " + tok, dpop: good()}, allow},
				{"on a route without require_binding", bindReq{path: "/open/x", auth: dp,
					dpop: []string{proof(t, k, tok, map[string]any{"htu": "https://" + bindHost + "/open/x"}, nil)}}, allow},
				{"on a route requiring any", bindReq{path: "/any/x", auth: dp,
					dpop: []string{proof(t, k, tok, map[string]any{"htu": "https://" + bindHost + "/any/x"}, nil)}}, allow},
				{"bound to key and certificate, both proven", bindReq{path: "/mtls/x", auth: "DPoP " + bothTok, cert: url.PathEscape(certPEM),
					dpop: []string{proof(t, k, bothTok, map[string]any{"htu": "https://" + bindHost + "/mtls/x"}, nil)}}, allow},
				{"both, certificate missing", bindReq{path: "/mtls/x", auth: "DPoP " + bothTok,
					dpop: []string{proof(t, k, bothTok, map[string]any{"htu": "https://" + bindHost + "/mtls/x"}, nil)}}, wantDPoPToken},

				{"no proof", bindReq{path: "/dpop/orders", auth: dp}, wantDPoPProof},
				{"two DPoP headers (joined)", bindReq{path: "/dpop/orders", auth: dp, dpop: []string{good()[0], good()[0]}}, wantDPoPProof},
				{"two DPoP headers (raw)", bindReq{path: "/dpop/orders", auth: dp, dpop: []string{good()[0], good()[0]}, raw: true}, wantDPoPProof},
				{"wrong typ", bindReq{path: "/dpop/orders", auth: dp, dpop: []string{proof(t, k, tok, nil, map[string]any{"typ": "JWT"})}}, wantDPoPProof},
				{"private key in the jwk", bindReq{path: "/dpop/orders", auth: dp, dpop: []string{proof(t, k, tok, nil, map[string]any{"jwk": private})}}, wantDPoPProof},
				{"jwk of an unsupported key type", bindReq{path: "/dpop/orders", auth: dp, dpop: []string{proof(t, k, tok, nil, map[string]any{"jwk": map[string]any{"kty": "oct", "k": "c2VjcmV0"}})}}, wantDPoPProof},
				{"alg none", bindReq{path: "/dpop/orders", auth: dp, dpop: []string{none}}, wantDPoPProof},
				{"alg HS256", bindReq{path: "/dpop/orders", auth: dp, dpop: []string{hs}}, wantDPoPProof},
				{"alg outside the provider's allow-list", bindReq{path: "/dpop/orders", auth: "DPoP " + psTok, dpop: []string{proof(t, ps, psTok, nil, nil)}}, wantDPoPProof},
				{"bad base64", bindReq{path: "/dpop/orders", auth: dp, dpop: []string{"e30.e30.***"}}, wantDPoPProof},
				{"larger than 8 KiB", bindReq{path: "/dpop/orders", auth: dp, dpop: []string{proof(t, k, tok, map[string]any{"pad": strings.Repeat("a", 8192)}, nil)}}, wantDPoPProof},
				{"wrong htm", bindReq{path: "/dpop/orders", auth: dp, dpop: []string{proof(t, k, tok, map[string]any{"htm": "POST"}, nil)}}, wantDPoPProof},
				{"wrong htu", bindReq{path: "/dpop/other", auth: dp, dpop: good()}, wantDPoPProof},
				{"htu of another scheme", bindReq{path: "/dpop/orders", auth: dp, dpop: good(), scheme: "http"}, wantDPoPProof},
				{"stale iat", bindReq{path: "/dpop/orders", auth: dp, dpop: []string{proof(t, k, tok, map[string]any{"iat": time.Now().Add(-2 * time.Minute).Unix()}, nil)}}, wantDPoPProof},
				{"iat in the future", bindReq{path: "/dpop/orders", auth: dp, dpop: []string{proof(t, k, tok, map[string]any{"iat": time.Now().Add(2 * time.Minute).Unix()}, nil)}}, wantDPoPProof},
				{"wrong ath", bindReq{path: "/dpop/orders", auth: dp, dpop: []string{proof(t, k, tok, map[string]any{"ath": jose.AccessTokenHash(plain)}, nil)}}, wantDPoPProof},
				{"no jti", bindReq{path: "/dpop/orders", auth: dp, dpop: []string{proof(t, k, tok, map[string]any{"jti": nil}, nil)}}, wantDPoPProof},
				{"proof by another key (jkt)", bindReq{path: "/dpop/orders", auth: dp, dpop: []string{proof(t, other, tok, nil, nil)}}, wantDPoPToken},
				// The key is compared with cnf.jkt before the signature is verified (docs/decisions.md#bound-tokens):
				// a proof naming another key is the token's problem whatever its signature.
				{"another key's jwk, signature by neither (jkt first)", bindReq{path: "/dpop/orders", auth: dp,
					dpop: []string{proof(t, k, tok, nil, map[string]any{"jwk": otherPub})}}, wantDPoPToken},
				{"DPoP-bound token as Bearer", bindReq{path: "/open/x", auth: "Bearer " + tok, dpop: good()}, wantBearerBound},
				{"unbound token with the DPoP scheme", bindReq{path: "/open/x", auth: "DPoP " + plain, dpop: []string{proof(t, k, plain, nil, nil)}}, wantDPoPToken},
				{"invalid token with the DPoP scheme", bindReq{path: "/open/x", auth: "DPoP not.a.token", dpop: good()}, wantDPoPToken},
				{"dpop route, unbound Bearer token", bindReq{path: "/dpop/orders", auth: "Bearer " + plain}, wantDPoPOnly},
				{"dpop route, no credentials", bindReq{path: "/dpop/orders"}, want{code.Code_UNAUTHENTICATED, 401, dpopChallenge, "unauthorized"}},
				{"dpop route, certificate-bound token", bindReq{path: "/dpop/orders", auth: "Bearer " + mtlsTok, cert: url.PathEscape(certPEM)}, wantDPoPOnly},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					assertDecision(t, b.checkGRPC(t, c.req.grpc()), c.want, tok)
				})
			}
		})
	}

	t.Run("certificates", func(t *testing.T) {
		anyWWW := `DPoP realm="tokengate", algs="ES256 RS256", Bearer realm="tokengate", error="invalid_token", error_description="*`
		mtlsDenied := want{code.Code_UNAUTHENTICATED, 401, `Bearer realm="tokengate", error="invalid_token", error_description="*`, "invalid_token"}
		anyDenied := want{code.Code_UNAUTHENTICATED, 401, anyWWW, "invalid_token"}
		for _, c := range []struct {
			name string
			req  bindReq
			want want
		}{
			{"its certificate (path-escaped)", bindReq{path: "/mtls/x", auth: "Bearer " + mtlsTok, cert: url.PathEscape(certPEM)}, allow},
			{"its certificate (query-escaped, + for space)", bindReq{path: "/mtls/x", auth: "Bearer " + mtlsTok, cert: url.QueryEscape(certPEM)}, allow},
			{"on an open route", bindReq{path: "/open/x", auth: "Bearer " + mtlsTok, cert: url.PathEscape(certPEM)}, allow},
			{"on an any route", bindReq{path: "/any/x", auth: "Bearer " + mtlsTok, cert: url.PathEscape(certPEM)}, allow},
			{"no certificate", bindReq{path: "/open/x", auth: "Bearer " + mtlsTok}, mtlsDenied},
			{"another certificate", bindReq{path: "/open/x", auth: "Bearer " + mtlsTok, cert: url.PathEscape(otherPEM)}, mtlsDenied},
			{"a certificate that does not parse", bindReq{path: "/open/x", auth: "Bearer " + mtlsTok, cert: url.PathEscape("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")}, mtlsDenied},
			{"garbage", bindReq{path: "/open/x", auth: "Bearer " + mtlsTok, cert: "%zz"}, mtlsDenied},
			{"mtls route, unbound token", bindReq{path: "/mtls/x", auth: "Bearer " + plain, cert: url.PathEscape(certPEM)}, mtlsDenied},
			{"any route, unbound token", bindReq{path: "/any/x", auth: "Bearer " + plain}, anyDenied},
			{"any route, no credentials", bindReq{path: "/any/x"}, want{code.Code_UNAUTHENTICATED, 401, dpopChallenge + `, Bearer realm="tokengate"`, "unauthorized"}},
			{"open route, unbound token", bindReq{path: "/open/x", auth: "Bearer " + plain}, allow},
			{"open route, no credentials: Bearer only", bindReq{path: "/open/x"}, unauthorized},
			{"unsupported cnf", bindReq{path: "/open/x", auth: "Bearer " + b.token("rs", map[string]any{"cnf": map[string]any{"jwk": map[string]any{"kty": "EC"}}})}, mtlsDenied},
		} {
			t.Run(c.name, func(t *testing.T) { assertDecision(t, b.checkGRPC(t, c.req.grpc()), c.want, mtlsTok) })
		}
	})

	// The log names the failed check and never the token or the proof; the metric counts it.
	logs := b.logs.String()
	for _, reason := range []string{"binding: dpop_htu", "binding: dpop_typ", "binding: dpop_jkt_mismatch", "binding: mtls_mismatch", "binding: dpop_bearer_scheme", "binding: binding_required"} {
		if !strings.Contains(logs, reason) {
			t.Errorf("no log line with reason %q", reason)
		}
	}
	if strings.Contains(logs, mtlsTok) || strings.Contains(logs, plain) || strings.Contains(logs, "eyJ") {
		t.Error("a log line holds a token or a proof")
	}
	scrape := scrapeMetrics(t, b.metrics)
	for _, line := range []string{`tokengate_binding_refusals_total{reason="dpop_htu"} 4`, `tokengate_binding_refusals_total{reason="mtls_mismatch"} 1`,
		`tokengate_binding_refusals_total{reason="dpop_multiple"} 4`, `tokengate_binding_refusals_total{reason="mtls_bad_certificate"} 2`} {
		if !strings.Contains(scrape, line) {
			t.Errorf("metrics lack %s", line)
		}
	}
}

func scrapeMetrics(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// TestDPoPReplay: a proof is accepted once; its replay is refused, through gRPC and
// forward-auth alike (one cache per Authorizer), and so is a proof whose jti was used with
// another proof.
func TestDPoPReplay(t *testing.T) {
	b := newBindingRig(t)
	k, err := jose.GenerateKey("ES256", "client")
	if err != nil {
		t.Fatal(err)
	}
	tok := b.token("es", map[string]any{"cnf": map[string]any{"jkt": thumbprint(t, k)}})
	p := proof(t, k, tok, map[string]any{"jti": "once"}, nil)
	req := bindReq{path: "/dpop/orders", auth: "DPoP " + tok, dpop: []string{p}}
	assertDecision(t, b.checkGRPC(t, req.grpc()), allow)
	assertDecision(t, b.checkGRPC(t, req.grpc()), wantDPoPProof)
	// The same jti in a new proof (another iat) is a replay too.
	p2 := proof(t, k, tok, map[string]any{"jti": "once", "iat": time.Now().Add(-time.Second).Unix()}, nil)
	assertDecision(t, b.checkGRPC(t, bindReq{path: "/dpop/orders", auth: "DPoP " + tok, dpop: []string{p2}}.grpc()), wantDPoPProof)
	res := forwardAuth(t, b, "/dpop/orders", "DPoP "+tok, []string{p}, "https", "")
	if res.StatusCode != 401 || !strings.Contains(res.Header.Get("WWW-Authenticate"), `error="invalid_dpop_proof"`) {
		t.Fatalf("forward-auth replay: %d %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
	if !strings.Contains(scrapeMetrics(t, b.metrics), `tokengate_binding_refusals_total{reason="dpop_replay"} 3`) {
		t.Error("replays not counted")
	}
}

func forwardAuth(t *testing.T, b *bindingRig, path, auth string, dpop []string, proto, cert string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", b.fa.URL+"/authz", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-Uri", path)
	req.Header.Set("X-Forwarded-Host", bindHost)
	req.Header.Set("X-Forwarded-Method", "GET")
	if proto != "" {
		req.Header.Set("X-Forwarded-Proto", proto)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for _, p := range dpop {
		req.Header.Add("DPoP", p)
	}
	if cert != "" {
		req.Header.Set("X-Client-Cert", cert)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

// TestBoundTokensForwardAuth: the DPoP header, X-Forwarded-Proto and server.client_cert_header
// (nginx $ssl_client_escaped_cert) over forward-auth.
func TestBoundTokensForwardAuth(t *testing.T) {
	b := newBindingRig(t)
	k, err := jose.GenerateKey("RS256", "client")
	if err != nil {
		t.Fatal(err)
	}
	mine, other := testkit.SelfSigned(t, testkit.LeafSpec{CN: "client"}), testkit.SelfSigned(t, testkit.LeafSpec{CN: "other"})
	certPEM, otherPEM, x5t := string(mine.CertPEM), string(other.CertPEM), mine.X5T()
	tok := b.token("es", map[string]any{"cnf": map[string]any{"jkt": thumbprint(t, k)}})
	mtlsTok := b.token("es", map[string]any{"cnf": map[string]any{"x5t#S256": x5t}})
	htu := func(scheme string) []string {
		return []string{proof(t, k, tok, map[string]any{"htu": scheme + "://" + bindHost + "/dpop/orders"}, nil)}
	}
	for _, c := range []struct {
		name       string
		path, auth string
		dpop       []string
		proto      string
		cert       string
		status     int
		www        string // prefix
	}{
		{"DPoP over https", "/dpop/orders", "DPoP " + tok, htu("https"), "https", "", 200, ""},
		{"no X-Forwarded-Proto: https", "/dpop/orders", "DPoP " + tok, htu("https"), "", "", 200, ""},
		{"http per X-Forwarded-Proto", "/dpop/orders", "DPoP " + tok, htu("http"), "http", "", 200, ""},
		{"htu scheme differs", "/dpop/orders", "DPoP " + tok, htu("https"), "http", "", 401, dpopProofErr[:len(dpopProofErr)-1]},
		{"two DPoP headers", "/dpop/orders", "DPoP " + tok, append(htu("https"), htu("https")...), "https", "", 401, dpopProofErr[:len(dpopProofErr)-1]},
		{"bound token as Bearer", "/open/x", "Bearer " + tok, nil, "https", "", 401, dpopChallenge + `, Bearer realm="tokengate", error="invalid_token"`},
		{"certificate header (nginx escaping)", "/mtls/x", "Bearer " + mtlsTok, nil, "https", url.QueryEscape(certPEM), 200, ""},
		{"certificate header, path escaping", "/mtls/x", "Bearer " + mtlsTok, nil, "https", url.PathEscape(certPEM), 200, ""},
		{"another certificate", "/mtls/x", "Bearer " + mtlsTok, nil, "https", url.QueryEscape(otherPEM), 401, `Bearer realm="tokengate", error="invalid_token"`},
		{"no certificate", "/mtls/x", "Bearer " + mtlsTok, nil, "https", "", 401, `Bearer realm="tokengate", error="invalid_token"`},
		{"unparseable certificate", "/mtls/x", "Bearer " + mtlsTok, nil, "https", "-----BEGIN%20CERTIFICATE-----%0Azz", 401, `Bearer realm="tokengate", error="invalid_token"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := forwardAuth(t, b, c.path, c.auth, c.dpop, c.proto, c.cert)
			if res.StatusCode != c.status || !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), c.www) {
				t.Fatalf("got %d %q; want %d %q", res.StatusCode, res.Header.Get("WWW-Authenticate"), c.status, c.www)
			}
		})
	}
}
