package upstream

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Each configured field reaches the IdP as RFC 6749 §4.4.2 and the seeds (KrakenD, Auth0,
// Traefik Hub) expect it.
func TestFieldsReachIdP(t *testing.T) {
	i := newIDP(t)
	clk := newClock()
	c := newTestCache(t, clk, nil)
	tests := []struct {
		name  string
		cc    func(ClientCredentials) ClientCredentials
		check func(t *testing.T, s seen)
	}{
		{
			name: "basic style: credentials form-urlencoded in the Basic header, none in the body",
			cc: func(cc ClientCredentials) ClientCredentials {
				cc.ClientID, cc.ClientSecret = "id:with space", "s3cr%t:+/="
				cc.Scopes = []string{"orders.read", "orders.write"}
				cc.Audience = "https://api.partner.com"
				cc.EndpointParams = map[string][]string{"resource": {"x"}}
				cc.AuthStyle = AuthStyleBasic
				return cc
			},
			check: func(t *testing.T, s seen) {
				if !s.hasBasic || s.user != "id:with space" || s.pass != "s3cr%t:+/=" {
					t.Errorf("basic credentials = %v %q %q", s.hasBasic, s.user, s.pass)
				}
				if s.form.Has("client_id") || s.form.Has("client_secret") {
					t.Errorf("credentials also in the body: %v", s.form)
				}
				want := map[string]string{"grant_type": "client_credentials", "scope": "orders.read orders.write", "audience": "https://api.partner.com", "resource": "x"}
				for k, v := range want {
					if got := s.form.Get(k); got != v {
						t.Errorf("%s = %q, want %q", k, got, v)
					}
				}
				if s.method != http.MethodPost || s.contentType != "application/x-www-form-urlencoded" {
					t.Errorf("method %s content-type %s", s.method, s.contentType)
				}
			},
		},
		{
			name: "default style is basic",
			cc:   func(cc ClientCredentials) ClientCredentials { return cc },
			check: func(t *testing.T, s seen) {
				if !s.hasBasic || s.form.Has("client_secret") || s.form.Has("scope") {
					t.Errorf("seen %+v", s)
				}
			},
		},
		{
			name: "body style (Auth0): client_id, client_secret and audience as form fields, no header",
			cc: func(cc ClientCredentials) ClientCredentials {
				cc.AuthStyle = AuthStyleBody
				cc.Audience = "YOUR-AUDIENCE"
				return cc
			},
			check: func(t *testing.T, s seen) {
				if s.auth != "" {
					t.Errorf("Authorization header sent: %q", s.auth)
				}
				if s.form.Get("client_id") != "gw" || s.form.Get("client_secret") != "gw-secret-value" || s.form.Get("audience") != "YOUR-AUDIENCE" || s.form.Get("grant_type") != "client_credentials" {
					t.Errorf("form = %v", s.form)
				}
			},
		},
		{
			name: "KrakenD's Auth0 example verbatim: credentials and audience in endpoint_params",
			cc: func(cc ClientCredentials) ClientCredentials {
				cc.EndpointParams = map[string][]string{"client_id": {"gw"}, "client_secret": {"gw-secret-value"}, "audience": {"YOUR-AUDIENCE"}}
				return cc
			},
			check: func(t *testing.T, s seen) {
				if s.form.Get("client_id") != "gw" || s.form.Get("client_secret") != "gw-secret-value" || s.form.Get("audience") != "YOUR-AUDIENCE" {
					t.Errorf("form = %v", s.form)
				}
			},
		},
		{
			name: "Traefik Hub / Oracle: several scopes space-separated in one scope field",
			cc: func(cc ClientCredentials) ClientCredentials {
				cc.Scopes = []string{"urn:opc:resource:consumer::all", "custom:scope:read", "custom:scope:write"}
				return cc
			},
			check: func(t *testing.T, s seen) {
				if got := s.form["scope"]; len(got) != 1 || got[0] != "urn:opc:resource:consumer::all custom:scope:read custom:scope:write" {
					t.Errorf("scope = %q", got)
				}
			},
		},
		{
			name: "endpoint_params with several values and a scope given only there",
			cc: func(cc ClientCredentials) ClientCredentials {
				cc.EndpointParams = map[string][]string{"resource": {"a", "b"}, "scope": {"only.here"}}
				return cc
			},
			check: func(t *testing.T, s seen) {
				if got := s.form["resource"]; len(got) != 2 || got[0] != "a" || got[1] != "b" {
					t.Errorf("resource = %q", got)
				}
				if s.form.Get("scope") != "only.here" {
					t.Errorf("scope = %q", s.form.Get("scope"))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := i.n()
			cc := tt.cc(baseCC(i))
			tok, err := c.Fetch(bg, "r", cc)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if i.n() != before+1 {
				t.Fatalf("IdP calls = %d, want %d", i.n(), before+1)
			}
			if !strings.HasPrefix(tok.AccessToken, "tok-") {
				t.Fatalf("token %q", tok.AccessToken)
			}
			tt.check(t, i.last())
		})
	}
}

// RFC 6749 §5.1 token responses, plus opaque tokens and lower-case bearer.
func TestTokenResponses(t *testing.T) {
	const defTTL = 7 * time.Minute
	type resp struct {
		status      int
		contentType string
		body        string
		header      map[string]string
	}
	tests := []struct {
		name    string
		resp    resp
		wantTok string
		wantTTL time.Duration
		reason  string // expected Error.Reason when failing
	}{
		{name: "no expires_in: the configured default TTL, never x/oauth2's never-expiring zero",
			resp: resp{200, "application/json", `{"access_token":"opaque-1","token_type":"Bearer"}`, nil}, wantTok: "opaque-1", wantTTL: defTTL},
		{name: "expires_in null: default TTL",
			resp: resp{200, "application/json", `{"access_token":"t","token_type":"Bearer","expires_in":null}`, nil}, wantTok: "t", wantTTL: defTTL},
		{name: "expires_in as a string is parsed",
			resp: resp{200, "application/json", `{"access_token":"t","token_type":"Bearer","expires_in":"3600"}`, nil}, wantTok: "t", wantTTL: time.Hour},
		{name: "expires_in 0: not cached, an error",
			resp: resp{200, "application/json", `{"access_token":"t","token_type":"Bearer","expires_in":0}`, nil}, reason: ReasonBadExpiresIn},
		{name: "expires_in negative: an error",
			resp: resp{200, "application/json", `{"access_token":"t","token_type":"Bearer","expires_in":-30}`, nil}, reason: ReasonBadExpiresIn},
		{name: "expires_in a word: an error",
			resp: resp{200, "application/json", `{"access_token":"t","token_type":"Bearer","expires_in":"soon"}`, nil}, reason: ReasonInvalidResponse},
		{name: "token_type mac is refused",
			resp: resp{200, "application/json", `{"access_token":"t","token_type":"mac","expires_in":60}`, nil}, reason: ReasonBadTokenType},
		{name: "token_type lower-case bearer is accepted",
			resp: resp{200, "application/json", `{"access_token":"t","token_type":"bearer","expires_in":60}`, nil}, wantTok: "t", wantTTL: time.Minute},
		{name: "token_type missing is taken as Bearer",
			resp: resp{200, "application/json", `{"access_token":"t","expires_in":60}`, nil}, wantTok: "t", wantTTL: time.Minute},
		{name: "an opaque token with dots and symbols is returned byte for byte, never parsed",
			resp: resp{200, "application/json", `{"access_token":"_0XBPWQQ_a8c5b0b7-0e2a.~+/=","token_type":"Bearer","expires_in":60}`, nil}, wantTok: "_0XBPWQQ_a8c5b0b7-0e2a.~+/=", wantTTL: time.Minute},
		{name: "form-encoded answer (RFC 6749 is JSON, some IdPs are not)",
			resp: resp{200, "application/x-www-form-urlencoded", `access_token=formtok&token_type=bearer&expires_in=120`, nil}, wantTok: "formtok", wantTTL: 2 * time.Minute},
		{name: "form-encoded answer without expires_in: default TTL",
			resp: resp{200, "application/x-www-form-urlencoded", `access_token=formtok&token_type=bearer`, nil}, wantTok: "formtok", wantTTL: defTTL},
		{name: "missing access_token",
			resp: resp{200, "application/json", `{"token_type":"Bearer","expires_in":60}`, nil}, reason: ReasonInvalidResponse},
		{name: "access_token with a newline (header injection) is refused",
			resp: resp{200, "application/json", `{"access_token":"a\r\nx-admin: 1","token_type":"Bearer","expires_in":60}`, nil}, reason: ReasonInvalidResponse},
		{name: "a 302 is not followed",
			resp: resp{302, "text/html", `moved`, map[string]string{"Location": "/elsewhere"}}, reason: ReasonIdPError},
		{name: "not JSON",
			resp: resp{200, "application/json", `<html>oops</html>`, nil}, reason: ReasonInvalidResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := newIDP(t)
			var redirected atomic.Int64
			i.set(func(w http.ResponseWriter, r *http.Request, n int64) {
				if r.URL.Path == "/elsewhere" {
					redirected.Add(1)
					writeJSON(w, 200, map[string]any{"access_token": "stolen", "token_type": "Bearer"})
					return
				}
				for k, v := range tt.resp.header {
					w.Header().Set(k, v)
				}
				w.Header().Set("Content-Type", tt.resp.contentType)
				w.WriteHeader(tt.resp.status)
				_, _ = w.Write([]byte(tt.resp.body))
			})
			clk := newClock()
			c := newTestCache(t, clk, nil)
			cc := baseCC(i)
			cc.DefaultTTL = defTTL
			start := clk.Now()
			tok, err := c.Fetch(bg, "r", cc)
			if tt.reason != "" {
				var ue *Error
				if !errors.As(err, &ue) || ue.Reason != tt.reason || !errors.Is(err, ErrUnavailable) {
					t.Fatalf("err = %v, want reason %q", err, tt.reason)
				}
				if _, ok := c.tokens.Peek(CredentialsKey(ModeFetch, cc)); ok {
					t.Fatal("a failed answer was cached")
				}
				if redirected.Load() != 0 {
					t.Fatal("redirect followed")
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if tok.AccessToken != tt.wantTok {
				t.Fatalf("token %q, want %q", tok.AccessToken, tt.wantTok)
			}
			if got := tok.Expiry.Sub(start); got != tt.wantTTL {
				t.Fatalf("lifetime %v, want %v", got, tt.wantTTL)
			}
			// Cached: a second call does not reach the IdP.
			if _, err := c.Fetch(bg, "r", cc); err != nil || i.n() != 1 {
				t.Fatalf("second Fetch: err %v, IdP calls %d", err, i.n())
			}
		})
	}
}

// x/oauth2's zero Expiry means "never expires": without expires_in the token must still expire
// after the default TTL and be fetched again.
func TestNoExpiresInStillExpires(t *testing.T) {
	i := newIDP(t)
	i.set(i.okHandler(nil))
	clk := newClock()
	c := newTestCache(t, clk, nil)
	cc := baseCC(i)
	cc.DefaultTTL = time.Minute
	t1, err := c.Fetch(bg, "r", cc)
	if err != nil || t1.Expiry.IsZero() {
		t.Fatalf("t1 %+v err %v", t1, err)
	}
	clk.Advance(61 * time.Second)
	t2, err := c.Fetch(bg, "r", cc)
	if err != nil || t2.AccessToken == t1.AccessToken || i.n() != 2 {
		t.Fatalf("after the default TTL: token %q (was %q), err %v, calls %d", t2.AccessToken, t1.AccessToken, err, i.n())
	}
}

// Responses over the cap are refused, with or without a Content-Length; x/oauth2 alone would
// read 1 MiB of a 2 MB body.
func TestOversizedResponse(t *testing.T) {
	big := `{"access_token":"` + strings.Repeat("a", 2<<20) + `","token_type":"Bearer","expires_in":60}`
	for _, chunked := range []bool{false, true} {
		t.Run(map[bool]string{false: "content-length", true: "chunked"}[chunked], func(t *testing.T) {
			i := newIDP(t)
			i.set(func(w http.ResponseWriter, r *http.Request, n int64) {
				w.Header().Set("Content-Type", "application/json")
				if chunked {
					for off := 0; off < len(big); off += 64 << 10 {
						_, _ = w.Write([]byte(big[off:min(off+64<<10, len(big))]))
						w.(http.Flusher).Flush()
					}
					return
				}
				w.Header().Set("Content-Length", strconv.Itoa(len(big)))
				_, _ = w.Write([]byte(big))
			})
			c := newTestCache(t, newClock(), nil)
			_, err := c.Fetch(bg, "r", baseCC(i))
			var ue *Error
			if !errors.As(err, &ue) || ue.Reason != ReasonTooLarge {
				t.Fatalf("err = %v, want %q", err, ReasonTooLarge)
			}
		})
	}
}

// AutoDetect would retry a refused header-auth request with body auth: we never auto-detect,
// so an IdP that rejects the header sees exactly one request and never the secret in a body.
func TestNoAuthStyleAutoDetect(t *testing.T) {
	i := newIDP(t)
	i.set(func(w http.ResponseWriter, r *http.Request, n int64) {
		if _, _, ok := r.BasicAuth(); ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="idp"`)
			writeJSON(w, 401, map[string]string{"error": "invalid_client"})
			return
		}
		writeJSON(w, 200, map[string]any{"access_token": "via-body", "token_type": "Bearer", "expires_in": 60})
	})
	c := newTestCache(t, newClock(), nil)
	_, err := c.Fetch(bg, "r", baseCC(i))
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrRejected) {
		t.Fatalf("err = %v, want unavailable+rejected (fetch credentials refused → 503)", err)
	}
	if i.n() != 1 {
		t.Fatalf("IdP calls = %d, want 1 (no retry with another auth style)", i.n())
	}
	if s := i.last(); s.form.Has("client_secret") {
		t.Fatal("secret sent in the body")
	}
}

// x/oauth2's RetrieveError carries the IdP's body; it must reach neither an error text nor a log
// line, and neither may the secret or a token.
func TestErrorBodyNeverLeaks(t *testing.T) {
	const marker = "BODY-MARKER-do-not-leak"
	bodies := []struct {
		name, ct, body string
		status         int
		code           string
	}{
		{"oauth error with description", "application/json", `{"error":"invalid_scope","error_description":"` + marker + `","error_uri":"https://x/` + marker + `"}`, 400, "invalid_scope"},
		{"html 500", "text/html", `<html>` + marker + `</html>`, 500, ""},
		{"plain 503", "text/plain", marker, 503, ""},
		{"hostile error code", "application/json", `{"error":"bad\"code ` + marker + `"}`, 400, "invalid_error_code"},
	}
	for _, b := range bodies {
		t.Run(b.name, func(t *testing.T) {
			i := newIDP(t)
			i.set(func(w http.ResponseWriter, r *http.Request, n int64) {
				w.Header().Set("Content-Type", b.ct)
				w.WriteHeader(b.status)
				_, _ = w.Write([]byte(b.body))
			})
			log, buf := newLogger()
			c := newTestCache(t, newClock(), func(o *Options) { o.Logger = log })
			cc := baseCC(i)
			_, err := c.Fetch(bg, "partner", cc)
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range []string{err.Error(), buf.String()} {
				if strings.Contains(s, marker) || strings.Contains(s, cc.ClientSecret) {
					t.Fatalf("leak in %q", s)
				}
			}
			var ue *Error
			if !errors.As(err, &ue) || ue.Status != b.status || ue.Code != b.code {
				t.Fatalf("err %+v, want status %d code %q", ue, b.status, b.code)
			}
			if b.code != "" && (!strings.Contains(err.Error(), b.code) || !strings.Contains(buf.String(), `"idp_error":"`+b.code+`"`)) {
				t.Fatalf("the error code is missing: %q / %q", err.Error(), buf.String())
			}
			if !strings.Contains(buf.String(), `"route":"partner"`) {
				t.Fatalf("log does not name the route: %s", buf.String())
			}
			var re interface{ Unwrap() error }
			if errors.As(err, &re) && re.Unwrap() != nil {
				t.Fatal("the error wraps a library error")
			}
		})
	}
	// And on success nothing logs the token or the secret.
	i := newIDP(t)
	log, buf := newLogger()
	c := newTestCache(t, newClock(), func(o *Options) { o.Logger = log })
	tok, err := c.Fetch(bg, "r", baseCC(i))
	if err != nil || strings.Contains(buf.String(), tok.AccessToken) || strings.Contains(buf.String(), "gw-secret-value") {
		t.Fatalf("err %v log %q", err, buf.String())
	}
}

// TLS verification is always on, even if the given client disables it.
func TestTLSVerification(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"access_token": "tls-tok", "token_type": "Bearer", "expires_in": 60})
	}))
	t.Cleanup(srv.Close)
	cc := ClientCredentials{TokenURL: srv.URL + "/token", ClientID: "a", ClientSecret: "b", Timeout: time.Second}

	// Trusting the test CA: works.
	c := newTestCache(t, newClock(), func(o *Options) { o.HTTPClient = srv.Client() })
	if tok, err := c.Fetch(bg, "r", cc); err != nil || tok.AccessToken != "tls-tok" {
		t.Fatalf("trusted: %v", err)
	}
	// Default roots: the self-signed certificate is refused.
	c2 := newTestCache(t, newClock(), nil)
	if _, err := c2.Fetch(bg, "r", cc); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("untrusted: %v", err)
	}
	// A client with InsecureSkipVerify still verifies.
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()}}
	insecure.Transport.(*http.Transport).TLSClientConfig.RootCAs = nil
	insecure.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify = true
	c3 := newTestCache(t, newClock(), func(o *Options) { o.HTTPClient = insecure })
	if _, err := c3.Fetch(bg, "r", cc); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("insecure client: %v", err)
	}
}

func TestValidate(t *testing.T) {
	ok := ClientCredentials{TokenURL: "https://idp.example.com/token", ClientID: "a", ClientSecret: "s"}
	tests := []struct {
		name      string
		mod       func(*ClientCredentials)
		allowHTTP bool
		wantErr   string
	}{
		{"valid", func(*ClientCredentials) {}, false, ""},
		{"http loopback", func(c *ClientCredentials) { c.TokenURL = "http://127.0.0.1:9/t" }, false, ""},
		{"http localhost", func(c *ClientCredentials) { c.TokenURL = "http://localhost:9/t" }, false, ""},
		{"http remote refused", func(c *ClientCredentials) { c.TokenURL = "http://idp.example.com/t" }, false, "token_url"},
		{"http remote allowed", func(c *ClientCredentials) { c.TokenURL = "http://idp.example.com/t" }, true, ""},
		{"ftp", func(c *ClientCredentials) { c.TokenURL = "ftp://idp/t" }, true, "token_url"},
		{"relative", func(c *ClientCredentials) { c.TokenURL = "/token" }, true, "token_url"},
		{"userinfo", func(c *ClientCredentials) { c.TokenURL = "https://u:p@idp/t" }, true, "token_url"},
		{"no client id", func(c *ClientCredentials) { c.ClientID = "" }, false, "client_id"},
		{"auth style", func(c *ClientCredentials) { c.AuthStyle = "auto" }, false, "auth_style"},
		{"grant_type override", func(c *ClientCredentials) { c.EndpointParams = map[string][]string{"grant_type": {"password"}} }, false, "grant_type"},
		{"scope twice", func(c *ClientCredentials) {
			c.Scopes = []string{"a"}
			c.EndpointParams = map[string][]string{"scope": {"b"}}
		}, false, "scope"},
		{"audience conflict", func(c *ClientCredentials) {
			c.Audience = "x"
			c.EndpointParams = map[string][]string{"audience": {"y"}}
		}, false, "audience"},
		{"audience agree", func(c *ClientCredentials) {
			c.Audience = "x"
			c.EndpointParams = map[string][]string{"audience": {"x"}}
		}, false, ""},
		{"scope with space", func(c *ClientCredentials) { c.Scopes = []string{"a b"} }, false, "scopes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := ok
			tt.mod(&cc)
			err := cc.Validate(tt.allowHTTP)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "s") && strings.Contains(err.Error(), cc.ClientSecret+"\"") {
				t.Fatal("secret in error")
			}
		})
	}
	// A Fetch with an invalid configuration fails without an IdP call.
	i := newIDP(t)
	c := newTestCache(t, newClock(), nil)
	cc := baseCC(i)
	cc.EndpointParams = map[string][]string{"grant_type": {"password"}}
	var ue *Error
	if _, err := c.Fetch(bg, "r", cc); !errors.As(err, &ue) || ue.Reason != ReasonInvalidConfig || i.n() != 0 {
		t.Fatalf("err %v calls %d", err, i.n())
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"5", 5 * time.Second}, {" 120 ", 2 * time.Minute}, {"-1", 0}, {"0", 0}, {"soon", 0},
		{"999999999999", maxRetryAfter},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-30 * time.Second).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
