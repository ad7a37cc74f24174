package extauthz_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/issuer"
)

type want struct {
	grpc   code.Code
	status int    // HTTP status of the denial (0 for allow)
	www    string // exact WWW-Authenticate, "" for none; a prefix when it ends with "*"
	err    string // body error
}

var (
	allow        = want{grpc: code.Code_OK}
	unauthorized = want{code.Code_UNAUTHENTICATED, 401, `Bearer realm="tokengate"`, "unauthorized"}
	badRequest   = want{code.Code_INVALID_ARGUMENT, 400, `Bearer realm="tokengate", error="invalid_request"`, "invalid_request"}
	invalidTok   = want{code.Code_UNAUTHENTICATED, 401, `Bearer realm="tokengate", error="invalid_token", error_description="*`, "invalid_token"}
	noScope      = want{code.Code_PERMISSION_DENIED, 403, `Bearer realm="tokengate", error="insufficient_scope", scope="billing.read billing.write"`, "insufficient_scope"}
	forbidden    = want{code.Code_PERMISSION_DENIED, 403, "", "access_denied"}
	unavailable  = want{code.Code_UNAVAILABLE, 503, "", "temporarily_unavailable"}
)

// assertDecision checks a CheckResponse against the decision table (docs/decisions.md#the-decision-table), and that nothing secret (the
// token, its kid, library error text) reaches the client.
func assertDecision(t *testing.T, resp *authv3.CheckResponse, w want, secrets ...string) {
	t.Helper()
	if got := code.Code(resp.GetStatus().GetCode()); got != w.grpc {
		t.Fatalf("grpc status = %v, want %v (denied: %v)", got, w.grpc, resp.GetDeniedResponse())
	}
	if w.grpc == code.Code_OK {
		if resp.GetOkResponse() == nil {
			t.Fatal("allowed response without ok_response")
		}
		return
	}
	d := resp.GetDeniedResponse()
	if d == nil || d.GetStatus() == nil {
		t.Fatal("denial without denied_response.status (Envoy would answer 403)")
	}
	if int(d.GetStatus().GetCode()) != w.status {
		t.Fatalf("http status = %d, want %d (body %s)", d.GetStatus().GetCode(), w.status, d.GetBody())
	}
	headers := map[string]string{}
	for _, h := range d.GetHeaders() {
		headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	www := headers["www-authenticate"]
	if prefix, ok := strings.CutSuffix(w.www, "*"); ok {
		if !strings.HasPrefix(www, prefix) || !strings.HasSuffix(www, `"`) {
			t.Fatalf("WWW-Authenticate = %q, want prefix %q", www, prefix)
		}
	} else if www != w.www {
		t.Fatalf("WWW-Authenticate = %q, want %q", www, w.www)
	}
	if headers["content-type"] != "application/json" {
		t.Fatalf("content-type = %q", headers["content-type"])
	}
	var body map[string]string
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
		t.Fatalf("body is not JSON: %q", d.GetBody())
	}
	if body["error"] != w.err || body["error_description"] == "" || len(body) != 2 {
		t.Fatalf("body = %v, want error %q with a description", body, w.err)
	}
	all := d.GetBody() + www
	for _, s := range secrets {
		if s != "" && strings.Contains(all, s) {
			t.Fatalf("denial leaks %q: %s / %s", s, d.GetBody(), www)
		}
	}
	for _, lib := range []string{"jwx", "jws.", "jwt.", "failed to", "panic", "goroutine"} {
		if strings.Contains(strings.ToLower(all), lib) {
			t.Fatalf("denial leaks library text %q: %s", lib, all)
		}
	}
}

func TestCheckDecisions(t *testing.T) {
	r := newRig(t, 1000)
	good := r.token("rs", nil)
	bearer := func(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }
	selfTok, _, err := r.iss.Mint(context.Background(), issuerMint("svc"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rsaJWKS, _ := jose.PublicJWKS([]*jose.SigningKey{r.keys["rs"]})

	cases := []struct {
		name string
		req  *authv3.CheckRequest
		want want
		leak []string
	}{
		// docs/decisions.md#the-decision-table; RFC 6750 §3 challenges.
		{"no credentials", checkReq("x", "/", "GET", nil), unauthorized, nil},
		{"basic on a jwt route", checkReq("x", "/", "GET", map[string]string{"authorization": "Basic YTpi"}), unauthorized, nil},
		{"empty bearer", checkReq("x", "/", "GET", map[string]string{"authorization": "Bearer "}), badRequest, nil},
		{"bearer with spaces only", checkReq("x", "/", "GET", map[string]string{"authorization": "Bearer    "}), badRequest, nil},
		{"two tokens joined by envoy", checkReq("x", "/", "GET", map[string]string{"authorization": "Bearer " + good + ", Bearer " + good}), badRequest, []string{good}},
		{"header and query token", checkReq("x", "/?access_token="+good, "GET", bearer(good)), badRequest, []string{good}},
		{"lower-case scheme", checkReq("x", "/", "GET", map[string]string{"authorization": "bearer " + good}), allow, nil},
		{"valid RS256", checkReq("x", "/", "GET", bearer(good)), allow, nil},
		{"valid ES256", checkReq("x", "/", "GET", bearer(r.token("es", nil))), allow, nil},
		{"valid PS256", checkReq("x", "/", "GET", bearer(r.token("ps", nil))), allow, nil},
		{"valid EdDSA", checkReq("x", "/", "GET", bearer(r.token("ed", nil))), allow, nil},
		// Row 4: size and shape.
		{"oversized token", checkReq("x", "/", "GET", bearer(good+strings.Repeat("A", 10000))), invalidTok, nil},
		{"100k dots", checkReq("x", "/", "GET", bearer(strings.Repeat(".", 100000))), invalidTok, nil},
		{"two segments", checkReq("x", "/", "GET", bearer("a.b")), invalidTok, nil},
		{"five segments (JWE)", checkReq("x", "/", "GET", bearer("a.b.c.d.e")), invalidTok, nil},
		{"garbage", checkReq("x", "/", "GET", bearer("garbage")), invalidTok, nil},
		{"padded base64", checkReq("x", "/", "GET", bearer(strings.Replace(good, ".", "=.", 1))), invalidTok, nil},
		// Row 5: alg none.
		{"alg none", checkReq("x", "/", "GET", bearer(b64(map[string]any{"alg": "none", "kid": "rs"})+"."+b64(map[string]any{"iss": r.corpURL, "aud": corpAud, "exp": now.Add(time.Hour).Unix()})+".")), invalidTok, nil},
		{"alg NONE", checkReq("x", "/", "GET", bearer(b64(map[string]any{"alg": "NONE"})+"."+b64(map[string]any{"iss": r.corpURL})+".c2ln")), invalidTok, nil},
		// Row 6: HS256 keyed with the RSA public key.
		{"HS256 with the RSA JWKS as secret", checkReq("x", "/", "GET", bearer(hmacToken(map[string]any{"alg": "HS256", "kid": "rs"},
			map[string]any{"iss": r.corpURL, "aud": corpAud, "sub": "eve", "exp": now.Add(time.Hour).Unix()}, rsaJWKS))), invalidTok, nil},
		// Row 8: embedded jwk.
		{"embedded jwk", checkReq("x", "/", "GET", bearer(embeddedJWKToken(t, map[string]any{"iss": r.corpURL, "aud": corpAud, "sub": "eve", "exp": now.Add(time.Hour).Unix()}))), invalidTok, nil},
		// Rows 14–17: claims.
		{"expired", checkReq("x", "/", "GET", bearer(r.token("rs", map[string]any{"exp": now.Add(-time.Hour).Unix(), "iat": now.Add(-2 * time.Hour).Unix()}))), invalidTok, nil},
		{"exp zero", checkReq("x", "/", "GET", bearer(r.token("rs", map[string]any{"exp": 0}))), invalidTok, nil},
		{"exp missing", checkReq("x", "/", "GET", bearer(r.token("rs", map[string]any{"exp": nil}))), invalidTok, nil},
		{"not yet valid", checkReq("x", "/", "GET", bearer(r.token("rs", map[string]any{"nbf": now.Add(time.Hour).Unix()}))), invalidTok, nil},
		{"wrong issuer", checkReq("x", "/", "GET", bearer(r.token("rs", map[string]any{"iss": "https://evil.example/"}))), invalidTok, nil},
		{"wrong audience", checkReq("x", "/", "GET", bearer(r.token("rs", map[string]any{"aud": "api://other"}))), invalidTok, nil},
		{"audience wrong case", checkReq("x", "/", "GET", bearer(r.token("rs", map[string]any{"aud": "API://GATEWAY"}))), invalidTok, nil},
		{"audience in a list", checkReq("x", "/", "GET", bearer(r.token("rs", map[string]any{"aud": []string{"x", corpAud}}))), allow, nil},
		{"bad signature", checkReq("x", "/", "GET", bearer(good[:len(good)-4]+"AAAA")), invalidTok, nil},
		{"unknown kid", checkReq("x", "/", "GET", bearer(mustSign(t, genKey(t, "RS256", "stranger-kid"), r.corpURL))), invalidTok, []string{"stranger-kid"}},
		// Scopes and claims.
		{"missing scope", checkReq("billing.example.com", "/api/x", "GET", bearer(r.token("rs", map[string]any{"scope": "billing.read"}))), noScope, nil},
		{"scp array satisfies scopes", checkReq("billing.example.com", "/api/x", "GET", bearer(r.token("rs", map[string]any{"scope": nil, "scp": []string{"billing.read", "billing.write"}}))), allow, nil},
		{"claim mismatch", checkReq("billing.example.com", "/api/x", "GET", bearer(r.token("rs", map[string]any{"tenant": "other"}))), forbidden, []string{"other"}},
		{"claim missing", checkReq("billing.example.com", "/api/x", "GET", bearer(r.token("rs", map[string]any{"tenant": nil}))), forbidden, nil},
		// Route selection (docs/decisions.md#route-selection).
		{"unknown route", checkReq("x", "/", "GET", bearer(good), withRoute("nope")), forbidden, nil},
		{"named route beats match", checkReq("billing.example.com", "/api/x", "GET", nil, withRoute("public")), allow, nil},
		{"self token accepted on a self route", checkReq("x", "/mint/x", "GET", bearer(selfTok)), allow, nil},
		{"self token refused on a corp-only route", checkReq("x", "/", "GET", bearer(selfTok)), invalidTok, nil},
		{"provider keys never loaded", checkReq("x", "/", "GET", bearer(mustSign(t, genKey(t, "ES256", "dead"), r.deadURL)), withRoute("dead")), unavailable, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			resp := r.check(req)
			leak := append([]string{}, tc.leak...)
			if a := req.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"]; len(a) > 12 {
				leak = append(leak, strings.TrimPrefix(a, "Bearer "))
			}
			assertDecision(t, resp, tc.want, leak...)
		})
	}
}

func issuerMint(client string) issuer.MintRequest {
	return issuer.MintRequest{Subject: client, ClientID: client, Audience: "gw", Scopes: []string{"billing.read", "billing.write"}, TTL: time.Hour, NotAfter: time.Now().Add(time.Hour)}
}

func mustSign(t *testing.T, k *jose.SigningKey, iss string) string {
	t.Helper()
	tok, err := k.Sign(map[string]any{"iss": iss, "aud": corpAud, "sub": "x", "exp": time.Now().Add(time.Hour).Unix()}, "JWT")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRouteSelection(t *testing.T) {
	r := newRig(t, 1000)
	tok := r.token("rs", nil)
	cases := []struct {
		authority, path, method string
		named                   string
		route                   string
	}{
		{"billing.example.com", "/api/a", "GET", "", "billing"},
		{"BILLING.example.com:443", "/api/a", "POST", "", "billing"},
		{"billing.example.com", "/api/a", "DELETE", "", "wild"},    // method does not fit billing
		{"billing.example.com", "/api/a", "post", "", "billing"},   // methods compare in ASCII letter case
		{"billing.example.com", "/api/a", "PO\u017fT", "", "wild"}, // "POſT" is not POST (Unicode folds ſ to s)
		{"billing.example.com", "/other", "GET", "", "wild"},       // path does not fit billing
		{"a.b.example.com", "/", "GET", "", "wild"},
		{"example.com", "/", "GET", "", "jwt"}, // *.example.com does not match example.com
		{"notexample.com", "/", "GET", "", "jwt"},
		{"x", "/public/p", "GET", "", "public"},
		{"x", "/public/p?q=/../x", "GET", "", "public"}, // the query is not the path
		{"billing.example.com", "/api/a", "GET", "public", "public"},
	}
	for _, tc := range cases {
		var opts []reqOpt
		if tc.named != "" {
			opts = append(opts, withRoute(tc.named))
		}
		resp := r.check(checkReq(tc.authority, tc.path, tc.method, map[string]string{"authorization": "Bearer " + tok}, opts...))
		got := resp.GetDynamicMetadata().GetFields()["route"].GetStringValue()
		if got != tc.route {
			t.Errorf("%s %s %s (named %q): route %q, want %q (status %v)", tc.method, tc.authority, tc.path, tc.named, got, tc.route, resp.GetStatus())
		}
	}
	// A path whose normal form differs fits no route: /public/../x must not take the public route.
	for _, p := range []string{"/public/../x", "/public/./x", "/public//x", "/public/%2e%2e/x", "/public%2fx", "/public/..", "/public\\..\\x"} {
		resp := r.check(checkReq("x", p, "GET", nil))
		assertDecision(t, resp, forbidden)
	}
	// No route fits: 403.
	empty := newRigWithRoutes(t, nil, 10)
	assertDecision(t, empty.check(checkReq("x", "/", "GET", nil)), forbidden)
}

func TestAllowedResponse(t *testing.T) {
	r := newRig(t, 1000)
	tok := r.token("rs", map[string]any{"groups": []string{"a", "b"}, "level": 3})
	resp := r.check(checkReq("billing.example.com", "/api/x", "GET", map[string]string{
		"authorization": "Bearer " + tok, "x-subject": "spoofed", "x-missing": "spoofed"}))
	assertDecision(t, resp, allow)
	ok := resp.GetOkResponse()
	set := map[string]string{}
	for _, h := range ok.GetHeaders() {
		if h.GetAppendAction().String() != "OVERWRITE_IF_EXISTS_OR_ADD" {
			t.Errorf("header %s: append_action %v", h.GetHeader().GetKey(), h.GetAppendAction())
		}
		set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	wantSet := map[string]string{"x-subject": "alice", "x-scopes": "billing.read billing.write", "x-groups": "a b", "x-level": "3"}
	for k, v := range wantSet {
		if set[k] != v {
			t.Errorf("header %s = %q, want %q", k, set[k], v)
		}
	}
	if _, ok := set["authorization"]; ok {
		t.Error("passthrough must not mutate authorization")
	}
	if got := ok.GetHeadersToRemove(); len(got) != 1 || got[0] != "x-missing" {
		t.Errorf("headers_to_remove = %v, want [x-missing] (a claim the token lacks is removed, never injectable)", got)
	}
	md := resp.GetDynamicMetadata().GetFields()
	for k, v := range map[string]string{"sub": "alice", "iss": r.corpURL, "client_id": "web", "scope": "billing.read billing.write", "route": "billing"} {
		if md[k].GetStringValue() != v {
			t.Errorf("dynamic_metadata[%s] = %q, want %q", k, md[k].GetStringValue(), v)
		}
	}
	//lint:ignore SA1019 the test asserts that the deprecated field stays empty
	if ok.GetDynamicMetadata() != nil {
		t.Error("the deprecated ok_response.dynamic_metadata must stay empty")
	}

	// remove: authorization in headers_to_remove, never also set; and every header another
	// route forwards as a claim (docs/decisions.md#the-allowed-response), so a caller cannot inject x-subject here.
	resp = r.check(checkReq("a.example.com", "/", "GET", map[string]string{"authorization": "Bearer " + tok}))
	assertDecision(t, resp, allow)
	wantRemoved := []string{"authorization", "x-groups", "x-level", "x-missing", "x-scopes", "x-subject"}
	if got := resp.GetOkResponse().GetHeadersToRemove(); !slices.Equal(got, wantRemoved) {
		t.Errorf("remove: headers_to_remove = %v, want %v", got, wantRemoved)
	}
	if len(resp.GetOkResponse().GetHeaders()) != 0 {
		t.Errorf("remove: headers = %v", resp.GetOkResponse().GetHeaders())
	}
}

func TestMintRoute(t *testing.T) {
	r := newRig(t, 1000)
	callerExp := time.Now().Add(2 * time.Minute).Truncate(time.Second)
	tok := r.token("es", map[string]any{"exp": callerExp.Unix(), "sub": "bob", "client_id": nil, "azp": "spa"})
	minted := func() string {
		resp := r.check(checkReq("x", "/mint/a", "GET", map[string]string{"authorization": "Bearer " + tok}))
		assertDecision(t, resp, allow)
		for _, h := range resp.GetOkResponse().GetHeaders() {
			if h.GetHeader().GetKey() == "authorization" {
				if h.GetAppendAction().String() != "OVERWRITE_IF_EXISTS_OR_ADD" {
					t.Fatalf("append_action = %v", h.GetAppendAction())
				}
				for _, rm := range resp.GetOkResponse().GetHeadersToRemove() {
					if rm == "authorization" {
						t.Fatal("authorization both set and removed: Envoy removes after setting")
					}
				}
				return strings.TrimPrefix(h.GetHeader().GetValue(), "Bearer ")
			}
		}
		t.Fatal("no authorization header set")
		return ""
	}
	first := minted()
	ks, _, err := jose.ParseKeySet(r.iss.PublicJWKS())
	if err != nil {
		t.Fatal(err)
	}
	u, err := jose.Parse(first, 8192)
	if err != nil {
		t.Fatal(err)
	}
	if u.Type() != "at+jwt" {
		t.Errorf("typ = %q", u.Type())
	}
	c, err := u.Verify(ks, []string{"ES256"})
	if err != nil {
		t.Fatalf("minted token does not verify against the issuer's JWKS: %v", err)
	}
	if c.Subject != "bob" || c.Issuer != selfURL || len(c.Audience) != 1 || c.Audience[0] != "billing" ||
		c.Raw["client_id"] != "spa" || c.Raw["scope"] != "billing.read" {
		t.Errorf("claims = %+v", c.Raw)
	}
	if c.Expiry.After(callerExp) {
		t.Errorf("minted exp %v is after the caller's %v", c.Expiry, callerExp)
	}
	if second := minted(); second != first {
		t.Error("second Check did not reuse the minted token")
	}
	// 100 concurrent Checks for a new caller token sign once: they all get one token.
	tok2 := r.token("es", map[string]any{"sub": "carol"})
	var wg sync.WaitGroup
	got := make([]string, 100)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := r.client.Check(context.Background(), checkReq("x", "/mint/a", "GET", map[string]string{"authorization": "Bearer " + tok2}))
			if err == nil {
				for _, h := range resp.GetOkResponse().GetHeaders() {
					if h.GetHeader().GetKey() == "authorization" {
						got[i] = h.GetHeader().GetValue()
					}
				}
			}
		}()
	}
	wg.Wait()
	for i := range got {
		if got[i] == "" || got[i] != got[0] {
			t.Fatalf("concurrent mint %d got %q, want the one token %q", i, got[i], got[0])
		}
	}
}

func TestCheckNeverReturnsAnRPCError(t *testing.T) {
	r := newRig(t, 1000)
	for _, req := range []*authv3.CheckRequest{{}, {Attributes: &authv3.AttributeContext{}}, checkReq("", "", "", nil)} {
		resp := r.check(req)
		if resp.GetStatus() == nil || resp.GetDeniedResponse().GetStatus() == nil && resp.GetOkResponse() == nil {
			t.Fatalf("incomplete response %v", resp)
		}
	}
}
