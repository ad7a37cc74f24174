package issuer

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/authlimit"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// TestTokenAuthMethodsAndBodies covers both client authentication methods with both body
// formats (the Curity seed's form and the Otoroshi seed's JSON), through a real HTTP server.
func TestTokenAuthMethodsAndBodies(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		name string
		q    req
	}{
		{"basic+form", req{contentType: formCT, basic: basicAuth(svcID, svcSecret),
			body: form("grant_type", "client_credentials")}},
		{"post+form (Curity seed)", req{contentType: formCT,
			body: form("grant_type", "client_credentials", "client_id", svcID, "client_secret", svcSecret)}},
		{"basic+json", req{contentType: "application/json", basic: basicAuth(svcID, svcSecret),
			body: `{"grant_type":"client_credentials"}`}},
		{"post+json (Otoroshi seed)", req{contentType: "application/json; charset=utf-8",
			body: jsonBody(t, map[string]any{"grant_type": "client_credentials", "client_id": svcID,
				"client_secret": svcSecret, "scope": "read write", "audience": "orders"})}},
		{"form with charset", req{contentType: "application/x-www-form-urlencoded; charset=UTF-8",
			basic: basicAuth(svcID, svcSecret), body: form("grant_type", "client_credentials")}},
		{"basic plus the same client_id in the body", req{contentType: formCT, basic: basicAuth(svcID, svcSecret),
			body: form("grant_type", "client_credentials", "client_id", svcID)}},
		{"unknown parameters ignored, even repeated", req{contentType: formCT, basic: basicAuth(svcID, svcSecret),
			body: form("grant_type", "client_credentials", "resource", "x", "resource", "y", "foo", "")}},
		{"json unknown members of any type ignored", req{contentType: "application/json", basic: basicAuth(svcID, svcSecret),
			body: `{"grant_type":"client_credentials","extra":{"a":[1,2,{"b":null}]},"n":1.5,"scope":null}`}},
		{"lower-case basic scheme", req{contentType: formCT, rawAuth: []string{"basic " +
			base64.StdEncoding.EncodeToString([]byte(svcID+":"+svcSecret))}, body: form("grant_type", "client_credentials")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do(t, tc.q)
			if res.status != http.StatusOK {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			tr := checkTokenResponse(t, res)
			_, c := e.verifyWithServedJWKS(t, tr.AccessToken)
			if c.Subject != svcID || c.Raw["client_id"] != svcID {
				t.Errorf("sub/client_id = %q/%v", c.Subject, c.Raw["client_id"])
			}
			if tr.ExpiresIn != 300 {
				t.Errorf("expires_in = %d, want the client's 5m", tr.ExpiresIn)
			}
		})
	}
}

// TestTokenErrors covers every error code and status of the token endpoint (RFC 6749 §5.2),
// each with the no-store headers (RFC 6749 §5.1) and the §5.2 shape.
func TestTokenErrors(t *testing.T) {
	e := newEnv(t, nil)
	good := basicAuth(svcID, svcSecret)
	cc := form("grant_type", "client_credentials")
	cases := []struct {
		name   string
		q      req
		status int
		code   string
	}{
		// Row 28.
		{"GET", req{method: http.MethodGet, basic: good}, 405, ErrInvalidRequest},
		{"PUT", req{method: http.MethodPut, contentType: formCT, basic: good, body: cc}, 405, ErrInvalidRequest},
		{"JSON body without grant_type", req{contentType: "application/json", basic: good, body: `{"scope":"read"}`}, 400, ErrInvalidRequest},
		{"duplicate grant_type", req{contentType: formCT, basic: good, body: cc + "&grant_type=client_credentials"}, 400, ErrInvalidRequest},
		{"duplicate grant_type, one empty", req{contentType: formCT, basic: good, body: cc + "&grant_type="}, 400, ErrInvalidRequest},
		{"duplicate scope", req{contentType: formCT, basic: good, body: cc + "&scope=read&scope=write"}, 400, ErrInvalidRequest},
		{"JSON duplicate member", req{contentType: "application/json", basic: good,
			body: `{"grant_type":"client_credentials","grant_type":"client_credentials"}`}, 400, ErrInvalidRequest},
		{"JSON duplicate unknown member", req{contentType: "application/json", basic: good,
			body: `{"grant_type":"client_credentials","x":1,"x":2}`}, 400, ErrInvalidRequest},
		{"basic plus client_secret in the body", req{contentType: formCT, basic: good,
			body: form("grant_type", "client_credentials", "client_secret", svcSecret)}, 400, ErrInvalidRequest},
		{"basic plus a different client_id in the body", req{contentType: formCT, basic: good,
			body: form("grant_type", "client_credentials", "client_id", rotID)}, 400, ErrInvalidRequest},
		{"bearer plus client_secret in the body", req{contentType: formCT, rawAuth: []string{"Bearer x"},
			body: form("grant_type", "client_credentials", "client_id", svcID, "client_secret", svcSecret)}, 400, ErrInvalidRequest},
		{"secret in the query", req{contentType: formCT, query: "client_secret=" + svcSecret,
			body: form("grant_type", "client_credentials", "client_id", svcID)}, 400, ErrInvalidRequest},
		{"client_id in the query", req{contentType: formCT, query: "client_id=" + svcID, basic: good, body: cc}, 400, ErrInvalidRequest},
		{"malformed query", req{contentType: formCT, query: "a=%zz", basic: good, body: cc}, 400, ErrInvalidRequest},
		// Row 30 and the other §5.2 codes.
		{"missing grant_type", req{contentType: formCT, basic: good, body: form("scope", "read")}, 400, ErrInvalidRequest},
		{"empty grant_type counts as absent", req{contentType: formCT, basic: good, body: "grant_type="}, 400, ErrInvalidRequest},
		{"empty body", req{basic: good}, 400, ErrInvalidRequest},
		{"password grant", req{contentType: formCT, basic: good, body: form("grant_type", "password")}, 400, ErrUnsupportedGrantType},
		{"authorization_code grant", req{contentType: "application/json", basic: good,
			body: `{"grant_type":"authorization_code"}`}, 400, ErrUnsupportedGrantType},
		{"grant type case matters", req{contentType: formCT, basic: good, body: form("grant_type", "Client_Credentials")}, 400, ErrUnsupportedGrantType},
		{"disallowed scope", req{contentType: formCT, basic: good, body: cc + "&scope=read+delete"}, 400, ErrInvalidScope},
		{"scope with a forbidden character", req{contentType: formCT, basic: good, body: cc + "&scope=" + "read%22"}, 400, ErrInvalidScope},
		{"audience not allowed", req{contentType: formCT, basic: good, body: cc + "&audience=payroll"}, 400, ErrInvalidTarget},
		{"no credentials", req{contentType: formCT, body: cc}, 401, ErrInvalidClient},
		{"client_id without secret", req{contentType: formCT, body: cc + "&client_id=" + svcID}, 401, ErrInvalidClient},
		{"empty secret in the body", req{contentType: formCT, body: cc + "&client_id=" + svcID + "&client_secret="}, 401, ErrInvalidClient},
		{"wrong secret basic", req{contentType: formCT, basic: basicAuth(svcID, "nope"), body: cc}, 401, ErrInvalidClient},
		{"wrong secret post", req{contentType: formCT, body: form("grant_type", "client_credentials", "client_id", svcID, "client_secret", "nope")}, 401, ErrInvalidClient},
		{"unknown client", req{contentType: formCT, basic: basicAuth("ghost", svcSecret), body: cc}, 401, ErrInvalidClient},
		{"another client's secret", req{contentType: formCT, basic: basicAuth(rotID, svcSecret), body: cc}, 401, ErrInvalidClient},
		{"bearer scheme", req{contentType: formCT, rawAuth: []string{"Bearer abc"}, body: cc}, 401, ErrInvalidClient},
		{"basic with empty id", req{contentType: formCT, rawAuth: []string{"Basic " + base64.StdEncoding.EncodeToString([]byte(":x"))}, body: cc}, 401, ErrInvalidClient},
		// Malformed requests.
		{"text/plain", req{contentType: "text/plain", basic: good, body: cc}, 400, ErrInvalidRequest},
		{"body without content type", req{basic: good, body: cc}, 400, ErrInvalidRequest},
		{"multipart", req{contentType: "multipart/form-data; boundary=x", basic: good, body: cc}, 400, ErrInvalidRequest},
		{"bad media type", req{contentType: "application/json; =", basic: good, body: cc}, 400, ErrInvalidRequest},
		{"malformed JSON", req{contentType: "application/json", basic: good, body: `{"grant_type":`}, 400, ErrInvalidRequest},
		{"JSON array", req{contentType: "application/json", basic: good, body: `["client_credentials"]`}, 400, ErrInvalidRequest},
		{"JSON non-string grant_type", req{contentType: "application/json", basic: good, body: `{"grant_type":1}`}, 400, ErrInvalidRequest},
		{"JSON scope as array", req{contentType: "application/json", basic: good, body: `{"grant_type":"client_credentials","scope":["read"]}`}, 400, ErrInvalidRequest},
		{"JSON trailing data", req{contentType: "application/json", basic: good, body: `{"grant_type":"client_credentials"}{}`}, 400, ErrInvalidRequest},
		{"JSON invalid UTF-8", req{contentType: "application/json", basic: good, body: "{\"grant_type\":\"client_credentials\",\"x\":\"\xff\"}"}, 400, ErrInvalidRequest},
		{"form invalid UTF-8", req{contentType: formCT, basic: good, body: cc + "&scope=%ff"}, 400, ErrInvalidRequest},
		{"form bad escape", req{contentType: formCT, basic: good, body: cc + "&scope=%zz"}, 400, ErrInvalidRequest},
		{"form semicolon", req{contentType: formCT, basic: good, body: cc + ";scope=read"}, 400, ErrInvalidRequest},
		{"two Authorization headers", req{contentType: formCT, rawAuth: []string{encodeBasic(svcID, svcSecret), encodeBasic(svcID, svcSecret)}, body: cc}, 400, ErrInvalidRequest},
		{"basic not base64", req{contentType: formCT, rawAuth: []string{"Basic %%%"}, body: cc}, 400, ErrInvalidRequest},
		{"basic without colon", req{contentType: formCT, rawAuth: []string{"Basic " + base64.StdEncoding.EncodeToString([]byte("svc"))}, body: cc}, 400, ErrInvalidRequest},
		{"basic with a bad escape", req{contentType: formCT, rawAuth: []string{"Basic " + base64.StdEncoding.EncodeToString([]byte("svc:%zz"))}, body: cc}, 400, ErrInvalidRequest},
		{"body over 64 KiB", req{contentType: formCT, basic: good, body: cc + "&pad=" + strings.Repeat("x", MaxBodyBytes)}, 413, ErrInvalidRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do(t, tc.q)
			checkOAuthError(t, res, tc.status, tc.code)
			if tc.status == 405 && res.header.Get("Allow") != "POST" {
				t.Errorf("Allow = %q, want POST", res.header.Get("Allow"))
			}
			if strings.Contains(string(res.body), svcSecret) {
				t.Error("the answer echoes the secret")
			}
		})
	}
}

// TestBodyLimitBoundary: a body of exactly 64 KiB is read; one byte more is 413, even when the
// client sends no Content-Length (chunked).
func TestBodyLimitBoundary(t *testing.T) {
	e := newEnv(t, nil)
	base := form("grant_type", "client_credentials") + "&pad="
	exact := base + strings.Repeat("x", MaxBodyBytes-len(base))
	if res := e.do(t, req{contentType: formCT, basic: basicAuth(svcID, svcSecret), body: exact}); res.status != http.StatusOK {
		t.Fatalf("64 KiB body: %d %s", res.status, res.body)
	}
	r, err := http.NewRequest(http.MethodPost, e.srv.URL+PathToken, &chunkedReader{s: exact + "x"})
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", formCT)
	r.Header.Set("Authorization", encodeBasic(svcID, svcSecret))
	r.ContentLength = -1
	res, err := e.srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked 64 KiB + 1: status %d", res.StatusCode)
	}
	if res.Header.Get("Cache-Control") != "no-store" {
		t.Error("413 without no-store")
	}
}

// chunkedReader hides its length so that the client sends the body chunked.
type chunkedReader struct{ s string }

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.s == "" {
		return 0, io.EOF
	}
	n := copy(p, c.s)
	c.s = c.s[n:]
	return n, nil
}

// TestUnknownClientAndWrongSecretIdentical (RFC 6749 §5.2, docs/security.md): both answers are byte
// for byte the same (headers and body), for each authentication method.
func TestUnknownClientAndWrongSecretIdentical(t *testing.T) {
	e := newEnv(t, nil)
	cc := form("grant_type", "client_credentials")
	pairs := []struct {
		name           string
		unknown, wrong req
	}{
		{"basic", req{contentType: formCT, basic: basicAuth("no-such-client", "whatever"), body: cc},
			req{contentType: formCT, basic: basicAuth(svcID, "whatever"), body: cc}},
		{"post", req{contentType: formCT, body: cc + "&" + form("client_id", "no-such-client", "client_secret", "whatever")},
			req{contentType: formCT, body: cc + "&" + form("client_id", svcID, "client_secret", "whatever")}},
		{"rotating client", req{contentType: formCT, basic: basicAuth("no-such-client", "whatever"), body: cc},
			req{contentType: formCT, basic: basicAuth(rotID, "whatever"), body: cc}},
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			a, b := e.do(t, p.unknown), e.do(t, p.wrong)
			checkOAuthError(t, a, 401, ErrInvalidClient)
			if a.status != b.status || string(a.body) != string(b.body) {
				t.Errorf("answers differ:\n%d %s\n%d %s", a.status, a.body, b.status, b.body)
			}
			a.header.Del("Date")
			b.header.Del("Date")
			if !reflect.DeepEqual(a.header, b.header) {
				t.Errorf("headers differ:\n%v\n%v", a.header, b.header)
			}
		})
	}
}

// TestSecretRotation: a client with two digests accepts both secrets, and nothing else.
func TestSecretRotation(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		secret string
		ok     bool
	}{{rotOld, true}, {rotNew, true}, {svcSecret, false}, {rotOld + " ", false}, {strings.ToUpper(rotNew), false}} {
		res := e.do(t, req{contentType: formCT, basic: basicAuth(rotID, tc.secret), body: form("grant_type", "client_credentials")})
		if got := res.status == http.StatusOK; got != tc.ok {
			t.Errorf("secret %q: status %d, want ok=%v", tc.secret, res.status, tc.ok)
		}
	}
}

// TestBasicCredentialsAreFormURLEncoded: RFC 6749 §2.3.1 has the client form-urlencode its id
// and secret before Basic; both are decoded (fosite's special-character cases). x/oauth2, a
// real client, is used with both of its auth styles.
func TestBasicCredentialsAreFormURLEncoded(t *testing.T) {
	e := newEnv(t, nil)
	cc := form("grant_type", "client_credentials")
	raw := func(id, secret string) []string {
		return []string{"Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))}
	}
	cases := []struct {
		name   string
		q      req
		status int
	}{
		{"encoded", req{contentType: formCT, basic: basicAuth(specialID, specialSec), body: cc}, 200},
		{"space as %20, other characters raw", req{contentType: formCT, rawAuth: raw("a%3Ab%25%2B%C3%BC", "p@ss:w%25rd%2Bü/=%20&x"), body: cc}, 200},
		{"space as +", req{contentType: formCT, rawAuth: raw("a%3Ab%25%2B%C3%BC", "p@ss:w%25rd%2Bü/=+&x"), body: cc}, 200},
		{"a raw + is a space, so the secret differs", req{contentType: formCT, rawAuth: raw("a%3Ab%25%2B%C3%BC", "p@ss:w%25rd+ü/=+&x"), body: cc}, 401},
		{"unencoded secret with a stray %", req{contentType: formCT, rawAuth: raw("a%3Ab%25%2B%C3%BC", specialSec), body: cc}, 400},
		{"unencoded id splits at its colon", req{contentType: formCT, rawAuth: raw(specialID, url.QueryEscape(specialSec)), body: cc}, 400},
		{"post form", req{contentType: formCT, body: cc + "&" + form("client_id", specialID, "client_secret", specialSec)}, 200},
		{"post json", req{contentType: "application/json", body: jsonBody(t, map[string]any{
			"grant_type": "client_credentials", "client_id": specialID, "client_secret": specialSec})}, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do(t, tc.q)
			if res.status != tc.status {
				t.Fatalf("status %d, want %d: %s", res.status, tc.status, res.body)
			}
			if tc.status == 200 {
				_, c := e.verifyWithServedJWKS(t, checkTokenResponse(t, res).AccessToken)
				if c.Subject != specialID {
					t.Errorf("sub = %q", c.Subject)
				}
			}
		})
	}
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		cfg := clientcredentials.Config{ClientID: specialID, ClientSecret: specialSec, TokenURL: e.srv.URL + PathToken,
			Scopes: []string{"read"}, AuthStyle: style}
		ctx := context.WithValue(t.Context(), oauth2.HTTPClient, e.srv.Client())
		tok, err := cfg.Token(ctx)
		if err != nil {
			t.Fatalf("x/oauth2 style %v: %v", style, err)
		}
		if _, c := e.verifyWithServedJWKS(t, tok.AccessToken); c.Subject != specialID || c.Raw["scope"] != "read" {
			t.Errorf("x/oauth2 style %v: claims %v", style, c.Raw)
		}
	}
}

// TestScopes: allowed, default, repeated, disallowed; a client without default scopes gets a
// token without a scope claim.
func TestScopes(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		name, id, secret, scope string
		want                    string // granted scope; "!" = invalid_scope
	}{
		{"default", svcID, svcSecret, "", "read"},
		{"one", svcID, svcSecret, "write", "write"},
		{"two", svcID, svcSecret, "read write", "read write"},
		{"repeated granted once", svcID, svcSecret, "write read write", "write read"},
		{"doubled separator", svcID, svcSecret, "read  admin", "read admin"},
		{"only spaces means none", svcID, svcSecret, "   ", "read"},
		{"one disallowed", svcID, svcSecret, "read delete", "!"},
		{"another client's scope", bareID, bareSecret, "read", "!"},
		{"tab is not a separator", svcID, svcSecret, "read\twrite", "!"},
		{"no defaults, none asked", bareID, bareSecret, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do(t, req{contentType: formCT, basic: basicAuth(tc.id, tc.secret),
				body: form("grant_type", "client_credentials", "scope", tc.scope)})
			if tc.want == "!" {
				checkOAuthError(t, res, 400, ErrInvalidScope)
				return
			}
			tr := checkTokenResponse(t, res)
			if tr.Scope != tc.want {
				t.Errorf("response scope = %q, want %q", tr.Scope, tc.want)
			}
			_, c := e.verifyWithServedJWKS(t, tr.AccessToken)
			got, has := c.Raw["scope"]
			if tc.want == "" && has {
				t.Errorf("scope claim %v present, want absent", got)
			}
			if tc.want != "" && got != tc.want {
				t.Errorf("scope claim = %v, want %q", got, tc.want)
			}
			if strings.Contains(string(res.body), `"scope"`) != (tc.want != "") {
				t.Errorf("scope member presence wrong: %s", res.body)
			}
		})
	}
}

// TestAudiences: the first audience by default, another allowed one on request, invalid_target
// (RFC 8707 §2) otherwise.
func TestAudiences(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct{ asked, want string }{
		{"", "billing"}, {"billing", "billing"}, {"orders", "orders"}, {"payroll", "!"}, {"Billing", "!"}, {"billing orders", "!"},
	} {
		res := e.do(t, req{contentType: "application/json", basic: basicAuth(svcID, svcSecret),
			body: jsonBody(t, map[string]any{"grant_type": "client_credentials", "audience": tc.asked})})
		if tc.want == "!" {
			checkOAuthError(t, res, 400, ErrInvalidTarget)
			continue
		}
		_, c := e.verifyWithServedJWKS(t, checkTokenResponse(t, res).AccessToken)
		if c.Raw["aud"] != tc.want {
			t.Errorf("audience %q: aud = %v, want %q", tc.asked, c.Raw["aud"], tc.want)
		}
	}
}

// TestFailedAuthenticationSlowdown is the failure limiter (docs/issuer.md#failure-limiter):
// 100 bad secrets for one client_id from one address give 5 × 401 then 429 slow_down with
// Retry-After; meanwhile even the good secret from that address is refused; an unknown client_id
// gets the same treatment and the same answer; other clients from the address are not affected;
// 60 s after the last failure (moved by the test clock) the good secret works.
func TestFailedAuthenticationSlowdown(t *testing.T) {
	e := newEnv(t, nil)
	cc := form("grant_type", "client_credentials")
	count := func(id string) (n401, n429 int, last response) {
		for range 100 {
			last = e.do(t, req{contentType: formCT, basic: basicAuth(id, "wrong"), body: cc})
			switch last.status {
			case 401:
				n401++
			case 429:
				n429++
			default:
				t.Fatalf("status %d", last.status)
			}
		}
		return
	}
	for _, id := range []string{svcID, "ghost"} {
		n401, n429, last := count(id)
		if n401 != authlimit.DefaultClientFailures || n429 != 100-authlimit.DefaultClientFailures {
			t.Errorf("%s: %d × 401, %d × 429; want %d and %d", id, n401, n429, authlimit.DefaultClientFailures, 100-authlimit.DefaultClientFailures)
		}
		checkOAuthError(t, last, 429, ErrSlowDown)
		if got := last.header.Get("Retry-After"); got != "60" {
			t.Errorf("Retry-After = %q, want 60", got)
		}
	}
	// The 429 is the same whether the client exists or not.
	a := e.do(t, req{contentType: formCT, basic: basicAuth(svcID, "wrong"), body: cc})
	b := e.do(t, req{contentType: formCT, basic: basicAuth("ghost", "wrong"), body: cc})
	a.header.Del("Date")
	b.header.Del("Date")
	if string(a.body) != string(b.body) || !reflect.DeepEqual(a.header, b.header) {
		t.Errorf("429 answers differ for existing and unknown client")
	}
	// During the penalty the good secret is refused too (no oracle for a guesser).
	e.clock.Advance(59*time.Second + 500*time.Millisecond)
	res := e.do(t, req{contentType: formCT, basic: basicAuth(svcID, svcSecret), body: cc})
	checkOAuthError(t, res, 429, ErrSlowDown)
	if got := res.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After with 0.5 s left = %q, want 1 (rounded up)", got)
	}
	// Other clients from the same address are unaffected.
	e.getToken(t, rotID, rotNew)
	// 60 s after the last failure the good secret works, and keeps working.
	e.clock.Advance(500 * time.Millisecond)
	e.getToken(t, svcID, svcSecret)
	e.getToken(t, svcID, svcSecret)
	// Still 5 failures within 5 minutes: one more limits again, for another 60 s.
	checkOAuthError(t, e.do(t, req{contentType: formCT, basic: basicAuth(svcID, "wrong"), body: cc}), 401, ErrInvalidClient)
	checkOAuthError(t, e.do(t, req{contentType: formCT, basic: basicAuth(svcID, svcSecret), body: cc}), 429, ErrSlowDown)
	// After the window, the count starts again.
	e.clock.Advance(authlimit.DefaultWindow)
	n401, _, _ := count(svcID)
	if n401 != authlimit.DefaultClientFailures {
		t.Errorf("after the window: %d × 401, want %d", n401, authlimit.DefaultClientFailures)
	}
}

// TestFailedAuthenticationConcurrent: concurrent guesses are all counted. Allow and Fail are
// separate (docs/issuer.md#failure-limiter refuses nobody for attempts in flight), so up to the concurrency can
// be judged when the threshold is crossed; afterwards the key is limited.
func TestFailedAuthenticationConcurrent(t *testing.T) {
	e := newEnv(t, nil)
	var (
		mu     sync.Mutex
		counts = map[int]int{}
		wg     sync.WaitGroup
	)
	for range 40 {
		wg.Go(func() {
			res := e.do(t, req{contentType: formCT, basic: basicAuth(svcID, "wrong"), body: form("grant_type", "client_credentials")})
			mu.Lock()
			counts[res.status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if counts[401] < authlimit.DefaultClientFailures || counts[401]+counts[429] != 40 {
		t.Errorf("statuses %v; want at least %d × 401, the rest 429", counts, authlimit.DefaultClientFailures)
	}
	checkOAuthError(t, e.do(t, req{contentType: formCT, basic: basicAuth(svcID, svcSecret), body: form("grant_type", "client_credentials")}), 429, ErrSlowDown)
}

// TestConstantTimeCompare proves structurally what a timing test on a shared CI machine could
// not: every authentication compares the SHA-256 of the presented secret with
// subtle.ConstantTimeCompare against the same number (2) of 32-byte digests, whether the client
// is unknown, the secret wrong, or right in the first or the second rotation slot. What it does
// not prove: that SHA-256 and the map lookup take equal time (they do not depend on the stored
// secret; the map lookup's cost differs between a hit and a miss by nanoseconds).
func TestConstantTimeCompare(t *testing.T) {
	e := newEnv(t, nil)
	if reflect.ValueOf(e.iss.compare).Pointer() != reflect.ValueOf(subtle.ConstantTimeCompare).Pointer() {
		t.Fatal("the default compare is not subtle.ConstantTimeCompare")
	}
	type call struct{ la, lb int }
	var (
		mu    sync.Mutex
		calls []call
	)
	e.iss.compare = func(a, b []byte) int {
		mu.Lock()
		calls = append(calls, call{len(a), len(b)})
		mu.Unlock()
		return subtle.ConstantTimeCompare(a, b)
	}
	for _, tc := range []struct {
		name, id, secret string
		status           int
	}{
		{"unknown client", "ghost", rotOld, 401},
		{"wrong secret", rotID, "wrong", 401},
		{"first rotation slot", rotID, rotOld, 200},
		{"second rotation slot", rotID, rotNew, 200},
		{"one-secret client", svcID, svcSecret, 200},
		{"one-secret client, wrong", svcID, "x", 401},
	} {
		mu.Lock()
		calls = nil
		mu.Unlock()
		res := e.do(t, req{contentType: formCT, basic: basicAuth(tc.id, tc.secret), body: form("grant_type", "client_credentials")})
		if res.status != tc.status {
			t.Fatalf("%s: status %d", tc.name, res.status)
		}
		mu.Lock()
		got := append([]call(nil), calls...)
		mu.Unlock()
		if !reflect.DeepEqual(got, []call{{32, 32}, {32, 32}}) {
			t.Errorf("%s: compares %v, want two of 32 × 32 bytes", tc.name, got)
		}
	}
}

// TestTokenClaims checks the RFC 9068 header and every claim of a token from the endpoint,
// verified against the served JWKS, and that the response's expires_in matches exp.
func TestTokenClaims(t *testing.T) {
	e := newEnv(t, nil)
	now := e.clock.Now()
	tr := e.getToken(t, svcID, svcSecret, "scope", "read write", "audience", "orders")
	u, c := e.verifyWithServedJWKS(t, tr.AccessToken)
	if u.Type() != "at+jwt" || u.KeyID() != "k1" || u.Algorithm() != "ES256" {
		t.Errorf("header typ=%q kid=%q alg=%q", u.Type(), u.KeyID(), u.Algorithm())
	}
	want := map[string]any{
		"iss": e.srv.URL, "sub": svcID, "aud": "orders", "client_id": svcID, "scope": "read write",
		"exp": json.Number(itoa(now.Add(5 * time.Minute).Unix())), "iat": json.Number(itoa(now.Unix())),
		"tenant": "acme", "level": json.Number("42"), "tags": []any{"a", "b"},
	}
	jti, _ := c.Raw["jti"].(string)
	if b, err := base64.RawURLEncoding.DecodeString(jti); err != nil || len(b) != 16 {
		t.Errorf("jti %q is not 128 random bits", jti)
	}
	got := map[string]any{}
	for k, v := range c.Raw {
		if k != "jti" {
			got[k] = v
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("claims\n got %v\nwant %v", got, want)
	}
	if tr.ExpiresIn != 300 || !c.Expiry.Equal(now.Add(300*time.Second)) {
		t.Errorf("expires_in %d, exp %v", tr.ExpiresIn, c.Expiry)
	}
	// jti is unique.
	seen := map[string]bool{jti: true}
	for range 20 {
		_, c := e.verifyWithServedJWKS(t, e.getToken(t, svcID, svcSecret).AccessToken)
		id := c.Raw["jti"].(string)
		if seen[id] {
			t.Fatal("jti repeated")
		}
		seen[id] = true
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestTokensIssuedMetric: the token endpoint counts per client; failures and Mint do not.
func TestTokensIssuedMetric(t *testing.T) {
	e := newEnv(t, nil)
	e.getToken(t, svcID, svcSecret)
	e.getToken(t, svcID, svcSecret)
	e.getToken(t, rotID, rotOld)
	e.do(t, req{contentType: formCT, basic: basicAuth(svcID, "bad"), body: form("grant_type", "client_credentials")})
	if _, _, err := e.iss.Mint(t.Context(), MintRequest{Subject: "u", ClientID: svcID, Audience: "billing"}); err != nil {
		t.Fatal(err)
	}
	got := issuedCounts(t, e)
	if !reflect.DeepEqual(got, map[string]float64{svcID: 2, rotID: 1}) {
		t.Errorf("tokengate_tokens_issued_total = %v", got)
	}
}

func issuedCounts(t *testing.T, e *env) map[string]float64 {
	t.Helper()
	mfs, err := e.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "tokengate_tokens_issued_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "client_id" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// TestLogsHoldNoSecretsOrTokens: nothing the endpoint logs contains a secret or a token.
func TestLogsHoldNoSecretsOrTokens(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.getToken(t, svcID, svcSecret).AccessToken
	e.do(t, req{contentType: formCT, basic: basicAuth(svcID, "wrong-secret-x"), body: form("grant_type", "client_credentials")})
	e.do(t, req{contentType: formCT, basic: basicAuth(strings.Repeat("L", 5000), "x"), body: form("grant_type", "client_credentials")})
	logs := e.logs.String()
	for _, s := range []string{svcSecret, "wrong-secret-x", tok, strings.Split(tok, ".")[2], strings.Repeat("L", 100)} {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain %q", s[:min(20, len(s))])
		}
	}
	if !strings.Contains(logs, TokenHash(tok)) {
		t.Error("issued token not logged by hash")
	}
}
