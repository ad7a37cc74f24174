package testenv_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/testenv"
)

func startStack(t *testing.T) *testenv.Stack {
	t.Helper()
	s, err := testenv.StartStack(context.Background(), testenv.StackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

type result struct {
	status int
	header http.Header
	body   []byte
	echo   testenv.Echoed // when the request reached the upstream
}

func call(t *testing.T, base, path string, hdr map[string]string) result {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return readResult(t, resp)
}

// readResult reads an answer of the gateway (or forward-auth) into a result.
func readResult(t *testing.T, resp *http.Response) result {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	r := result{status: resp.StatusCode, header: resp.Header, body: body}
	if resp.StatusCode == http.StatusOK && len(body) > 0 { // forward-auth answers 200 with no body
		if err := json.Unmarshal(body, &r.echo); err != nil {
			t.Fatalf("upstream answer is not the echo: %s", body)
		}
	}
	return r
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// TestEveryModeThroughTheGateway drives each upstream mode end to end: client → stand-in
// gateway → real Check over gRPC → echo upstream, and checks what the upstream saw.
func TestEveryModeThroughTheGateway(t *testing.T) {
	s := startStack(t)
	ctx := context.Background()
	tok, err := s.ClientToken(ctx, "echo.read admin")
	if err != nil {
		t.Fatal(err)
	}
	idpTok, err := s.IdP.CallerToken(map[string]any{"aud": "api://gateway", "sub": "idp-user", "scope": "echo.read"})
	if err != nil {
		t.Fatal(err)
	}
	gw := s.Gateway.URL()

	// After a rewrite (RFC 6750 §2.1: one credential per request) the upstream sees exactly one
	// Authorization header, the new one, and never the caller's.
	oneAuth := func(t *testing.T, r result, caller string) string {
		t.Helper()
		if r.status != http.StatusOK {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		got := r.echo.Headers["Authorization"]
		if len(got) != 1 || !strings.HasPrefix(got[0], "Bearer ") {
			t.Fatalf("upstream Authorization = %q, want exactly one Bearer", got)
		}
		if strings.Contains(got[0], caller) {
			t.Fatal("the caller's token reached the upstream")
		}
		return strings.TrimPrefix(got[0], "Bearer ")
	}

	t.Run("mint", func(t *testing.T) {
		r := call(t, gw, "/mint/a", bearer(tok))
		minted := oneAuth(t, r, tok)
		if r.echo.Headers["X-Subject"][0] != testenv.DemoClientID || r.echo.Headers["X-Tenant"][0] != "demo" {
			t.Errorf("forwarded claims: %v", r.echo.Headers)
		}
		// The minted token is active at tokengate's introspection endpoint and is for the upstream.
		claims := introspect(t, s, minted)
		if claims["active"] != true || claims["aud"] != testenv.DemoMintAudience || claims["sub"] != testenv.DemoClientID {
			t.Errorf("introspection of the minted token: %v", claims)
		}
		// A spoofed forwarded-claim header never survives.
		r = call(t, gw, "/mint/a", map[string]string{"Authorization": "Bearer " + tok, "X-Subject": "root"})
		if got := r.echo.Headers["X-Subject"]; len(got) != 1 || got[0] != testenv.DemoClientID {
			t.Errorf("X-Subject = %v", got)
		}
	})
	t.Run("mint for an external IdP's caller", func(t *testing.T) {
		r := call(t, gw, "/mint/a", bearer(idpTok))
		oneAuth(t, r, idpTok)
	})
	t.Run("fetch", func(t *testing.T) {
		before := s.IdP.TokenRequests.Load()
		r := call(t, gw, "/fetch/a", bearer(tok))
		got := oneAuth(t, r, tok)
		if !strings.HasPrefix(got, "opaque-"+testenv.GatewayClientID) {
			t.Errorf("fetched token %q is not the IdP's token for tokengate's client", got)
		}
		r2 := call(t, gw, "/fetch/b", bearer(idpTok))
		if oneAuth(t, r2, idpTok) != got {
			t.Error("the fetched token is not reused")
		}
		if n := s.IdP.TokenRequests.Load() - before; n != 1 {
			t.Errorf("%d IdP calls for two requests, want 1", n)
		}
		form, auth := s.IdP.LastTokenRequest()
		if form.Get("grant_type") != "client_credentials" || form.Get("scope") != "orders.read" ||
			form.Get("audience") != testenv.DemoFetchAudience || !strings.HasPrefix(auth, "Basic ") {
			t.Errorf("token request form %v, auth %q", form, auth)
		}
	})
	t.Run("exchange", func(t *testing.T) {
		basic := func(id, secret string) map[string]string {
			req, _ := http.NewRequest("GET", "/", nil)
			req.SetBasicAuth(id, secret)
			return map[string]string{"Authorization": req.Header.Get("Authorization")}
		}
		r := call(t, gw, "/exchange/a", basic(testenv.PartnerClientID, testenv.PartnerSecret))
		got := oneAuth(t, r, testenv.PartnerSecret)
		if !strings.HasPrefix(got, "opaque-"+testenv.PartnerClientID) {
			t.Errorf("exchanged token %q", got)
		}
		r = call(t, gw, "/exchange/a", basic(testenv.PartnerClientID, "wrong"))
		assertDenial(t, r, 401, `Basic realm="tokengate"`, "invalid_client")
		r = call(t, gw, "/exchange/a", bearer(tok))
		assertDenial(t, r, 401, `Basic realm="tokengate"`, "unauthorized")
	})
	t.Run("passthrough", func(t *testing.T) {
		r := call(t, gw, "/passthrough/a", bearer(tok))
		if got := r.echo.Headers["Authorization"]; len(got) != 1 || got[0] != "Bearer "+tok {
			t.Errorf("passthrough: upstream saw %q", got)
		}
	})
	t.Run("remove", func(t *testing.T) {
		r := call(t, gw, "/remove/a", bearer(tok))
		if r.status != 200 || len(r.echo.Headers["Authorization"]) != 0 {
			t.Errorf("remove: %d %v", r.status, r.echo.Headers["Authorization"])
		}
	})
	t.Run("public", func(t *testing.T) {
		r := call(t, gw, "/public/a", map[string]string{"Authorization": "Bearer whatever"})
		if r.status != 200 || len(r.echo.Headers["Authorization"]) != 0 {
			t.Errorf("public: %d %v", r.status, r.echo.Headers)
		}
	})
	t.Run("health route skips ext_authz", func(t *testing.T) {
		if r := call(t, gw, "/healthz", nil); r.status != 200 {
			t.Errorf("status %d", r.status)
		}
	})
}

// TestDenialsThroughTheGateway: every denial class reaches the client with its status,
// challenge and JSON body, as Envoy would return them.
func TestDenialsThroughTheGateway(t *testing.T) {
	s := startStack(t)
	tok, err := s.ClientToken(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	gw := s.Gateway.URL()
	assertDenial(t, call(t, gw, "/mint/a", nil), 401, `Bearer realm="tokengate"`, "unauthorized")
	assertDenial(t, call(t, gw, "/mint/a", map[string]string{"Authorization": "Bearer "}), 400, `Bearer realm="tokengate", error="invalid_request"`, "invalid_request")
	assertDenial(t, call(t, gw, "/mint/a", bearer("not.a.token")), 401, `Bearer realm="tokengate", error="invalid_token"*`, "invalid_token")
	assertDenial(t, call(t, gw, "/admin/a", bearer(tok)), 403, `Bearer realm="tokengate", error="insufficient_scope", scope="admin"`, "insufficient_scope")
	assertDenial(t, call(t, gw, "/elsewhere", bearer(tok)), 403, "", "access_denied")

	// The IdP down with no cached token: 503 for fetch.
	s.IdP.SetDown(true)
	assertDenial(t, call(t, gw, "/fetch/a", bearer(tok)), 503, "", "temporarily_unavailable")
	s.IdP.SetDown(false)
}

func assertDenial(t *testing.T, r result, status int, www, errCode string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	got := r.header.Get("WWW-Authenticate")
	if prefix, ok := strings.CutSuffix(www, "*"); ok {
		if !strings.HasPrefix(got, prefix) {
			t.Fatalf("WWW-Authenticate %q, want prefix %q", got, prefix)
		}
	} else if got != www {
		t.Fatalf("WWW-Authenticate %q, want %q", got, www)
	}
	var body map[string]string
	if err := json.Unmarshal(r.body, &body); err != nil || body["error"] != errCode || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("body %s (content-type %q), want error %q", r.body, r.header.Get("Content-Type"), errCode)
	}
}

// introspect introspects token at tokengate's endpoint as the demo client.
func introspect(t *testing.T, s *testenv.Stack, token string) map[string]any {
	t.Helper()
	return introspectAs(t, s, testenv.DemoClientID, testenv.DemoClientSecret, token)
}

// introspectAs introspects token at tokengate's endpoint as client id.
func introspectAs(t *testing.T, s *testenv.Stack, id, secret, token string) map[string]any {
	t.Helper()
	_, m := postForm(t, "http://"+s.App.HTTPAddr()+"/oauth2/introspect", id, secret, url.Values{"token": {token}})
	return m
}

// postForm posts form to endpoint with client_secret_basic credentials and returns the status
// and the JSON answer.
func postForm(t *testing.T, endpoint, id, secret string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, m
}

// TestForwardAuthMatchesCheck: /authz gives the same decision as Check, reading the original
// request from each gateway's headers.
func TestForwardAuthMatchesCheck(t *testing.T) {
	s := startStack(t)
	tok, err := s.ClientToken(context.Background(), "echo.read")
	if err != nil {
		t.Fatal(err)
	}
	// The rig serves /authz on its own listener (server.authz_addr); on http_addr it is 404.
	if r := call(t, "http://"+s.App.HTTPAddr(), "/authz/mint/a", bearer(tok)); r.status != http.StatusNotFound {
		t.Fatalf("/authz on http_addr: status %d, want 404", r.status)
	}
	api := "http://" + s.App.AuthzAddr()
	for _, tc := range []struct {
		name   string
		path   string
		hdr    map[string]string
		status int
		auth   string // "minted", "same", "empty", ""
	}{
		{"traefik/caddy headers", "/authz", map[string]string{"X-Forwarded-Uri": "/mint/a", "X-Forwarded-Method": "GET", "X-Forwarded-Host": "x"}, 200, "minted"},
		{"nginx headers", "/authz", map[string]string{"X-Original-URI": "/mint/a", "X-Original-Method": "GET"}, 200, "minted"},
		{"envoy http_service prefix", "/authz/mint/a", nil, 200, "minted"},
		{"passthrough answers the caller's header", "/authz/passthrough/a", nil, 200, "same"},
		{"remove answers an empty header", "/authz/remove/a", nil, 200, "empty"},
		{"fetch", "/authz/fetch/a", nil, 200, "minted"},
		{"no route", "/authz/nowhere", nil, 403, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := bearer(tok)
			for k, v := range tc.hdr {
				h[k] = v
			}
			r := call(t, api, tc.path, h)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			got, present := r.header["Authorization"]
			switch tc.auth {
			case "minted":
				if !present || len(got) != 1 || got[0] == "Bearer "+tok || !strings.HasPrefix(got[0], "Bearer ") {
					t.Errorf("Authorization = %q", got)
				}
			case "same":
				if len(got) != 1 || got[0] != "Bearer "+tok {
					t.Errorf("Authorization = %q", got)
				}
			case "empty":
				if !present || got[0] != "" || !strings.Contains(r.header.Get("X-Envoy-Auth-Headers-To-Remove"), "authorization") {
					t.Errorf("Authorization = %q present=%v, remove list %q", got, present, r.header.Get("X-Envoy-Auth-Headers-To-Remove"))
				}
			}
		})
	}
	// Denials over forward-auth carry the same status, challenge and body.
	r := call(t, api, "/authz/mint/a", nil)
	assertDenial(t, r, 401, `Bearer realm="tokengate"`, "unauthorized")
}

// TestReadinessAndMetrics: /healthz, /readyz and /metrics as docs/operations.md#health-metrics-and-logs names them.
func TestReadinessAndMetrics(t *testing.T) {
	s := startStack(t)
	api := "http://" + s.App.HTTPAddr()
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(api + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, err, resp)
		}
		resp.Body.Close()
	}
	tok, _ := s.ClientToken(context.Background(), "")
	call(t, s.Gateway.URL(), "/mint/a", bearer(tok))
	call(t, s.Gateway.URL(), "/mint/a", bearer(tok)) // a cache hit for both caches
	call(t, s.Gateway.URL(), "/mint/a", nil)
	resp, err := http.Get(api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, m := range []string{
		`tokengate_check_total{result="allowed",route="mint"}`, `tokengate_check_total{result="denied",route="mint"}`,
		"tokengate_check_duration_seconds_bucket", `tokengate_jwks_refresh_total{provider="idp",result="success"}`,
		`tokengate_upstream_token_requests_total{mode="mint",result="success",route="mint"}`,
		`tokengate_tokens_issued_total{client_id="demo-client"}`, `tokengate_cache_hits_total`, `tokengate_cache_misses_total`,
	} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	if strings.Contains(string(body), tok) {
		t.Error("/metrics holds a token")
	}
}

// TestReloadAndKeyRotation: a reload keeps the generated signing key (tokens issued before it
// still work) and cached upstream tokens; a reload that replaces the signing key never serves a
// minted token signed by the retired key.
func TestReloadAndKeyRotation(t *testing.T) {
	s := startStack(t)
	ctx := context.Background()
	tok, err := s.ClientToken(ctx, "echo.read")
	if err != nil {
		t.Fatal(err)
	}
	gw := s.Gateway.URL()
	minted := func() string {
		t.Helper()
		r := call(t, gw, "/mint/a", bearer(tok))
		if r.status != 200 || len(r.echo.Headers["Authorization"]) != 1 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		return strings.TrimPrefix(r.echo.Headers["Authorization"][0], "Bearer ")
	}
	before := minted()
	fetchedBefore := call(t, gw, "/fetch/a", bearer(tok)).echo.Headers["Authorization"]
	idpCalls := s.IdP.TokenRequests.Load()

	if err := s.App.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := minted(); got != before {
		t.Error("an unchanged reload dropped the cached minted token")
	}
	if got := call(t, gw, "/fetch/a", bearer(tok)).echo.Headers["Authorization"]; len(got) != 1 || got[0] != fetchedBefore[0] {
		t.Errorf("fetched token after reload %q, before %q", got, fetchedBefore)
	}
	if n := s.IdP.TokenRequests.Load(); n != idpCalls {
		t.Errorf("a reload caused %d IdP calls", n-idpCalls)
	}

	// Rotate: the only signing key gets a new kid. The caller's old token is no longer
	// verifiable (its key is gone) — get a new one — and the minted token must be re-signed.
	cfg, err := os.ReadFile(s.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.ConfigPath, []byte(strings.Replace(string(cfg), "kid: demo-es256", "kid: demo-rotated", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.App.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if r := call(t, gw, "/mint/a", bearer(tok)); r.status != http.StatusUnauthorized {
		t.Fatalf("a token signed by a retired key: status %d", r.status)
	}
	if tok, err = s.ClientToken(ctx, "echo.read"); err != nil {
		t.Fatal(err)
	}
	after := minted()
	if claims := introspect(t, s, after); claims["active"] != true {
		t.Fatalf("minted token after rotation is not active: %v", claims)
	}
	if introspect(t, s, before)["active"] != false {
		t.Error("the token signed by the retired key is still active")
	}
}

// TestGatewayFailsClosed: with tokengate unreachable the stand-in answers status_on_error (503)
// and forwards nothing, as Envoy does with failure_mode_allow: false.
func TestGatewayFailsClosed(t *testing.T) {
	echo, err := testenv.NewEcho("")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close() // nothing listens there any more
	gw, err := testenv.NewGateway(testenv.GatewayOptions{CheckAddr: dead, UpstreamURL: echo.URL(), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	r := call(t, gw.URL(), "/anything", bearer("x"))
	if r.status != http.StatusServiceUnavailable || len(r.body) != 0 {
		t.Fatalf("status %d body %q, want 503 from the gateway itself", r.status, r.body)
	}
}
