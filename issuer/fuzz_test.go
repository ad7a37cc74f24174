package issuer

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/authlimit"
	"github.com/tokengate/tokengate/internal/jose"
)

// FuzzTokenEndpoint is the token endpoint fuzz target (docs/security.md#the-security-rules: nothing panics): whatever the body, the Authorization
// header and the content type, the token endpoint answers either a 200 with no-store and a token
// that verifies, or an RFC 6749 §5.2 error JSON with a known code, the status that goes with it
// and no-store; it never panics. The handler is called in process (a socket per input would
// make the fuzzer a hundred times slower and only adds net/http's own header validation).
func FuzzTokenEndpoint(f *testing.F) {
	cc := "grant_type=client_credentials"
	good := encodeBasic(svcID, svcSecret)
	for _, s := range []struct{ body, auth, ct string }{
		{cc, good, formCT},
		{cc + "&scope=read+write&audience=orders", good, formCT},
		{cc + "&client_id=" + svcID + "&client_secret=" + svcSecret, "", formCT},
		{`{"grant_type":"client_credentials","client_id":"svc","client_secret":"` + svcSecret + `","scope":"read"}`, "", "application/json"},
		{`{"grant_type":"client_credentials"}`, good, "application/json; charset=utf-8"},
		{cc + "&grant_type=client_credentials", good, formCT},
		{cc + "&client_secret=x", good, formCT},
		{cc, encodeBasic("ghost", "x"), formCT},
		{cc, "Bearer abc", formCT},
		{cc, "Basic !!!", formCT},
		{"grant_type=password", good, formCT},
		{cc + "&scope=delete", good, formCT},
		{cc + "&audience=nope", good, formCT},
		{`{"grant_type":1}`, good, "application/json"},
		{`{"a":{"b":[1,2,{"c":null}]}}`, good, "application/json"},
		{"%zz", good, formCT},
		{"", "", ""},
		{cc, good, "text/plain"},
		{strings.Repeat("x", MaxBodyBytes+1), good, formCT},
	} {
		f.Add(s.body, s.auth, s.ct)
	}
	e := newFuzzIssuer(f)
	h := e.Handler()
	ks, _, err := jose.ParseKeySet(e.PublicJWKS())
	if err != nil {
		f.Fatal(err)
	}
	allowed := map[int][]string{
		400: {ErrInvalidRequest, ErrUnsupportedGrantType, ErrInvalidScope, ErrInvalidTarget, ErrUnauthorizedClient, ErrInvalidGrant},
		401: {ErrInvalidClient},
		413: {ErrInvalidRequest},
		429: {ErrSlowDown},
	}
	f.Fuzz(func(t *testing.T, body, auth, ct string) {
		r := httptest.NewRequest(http.MethodPost, PathToken, strings.NewReader(body))
		r.RemoteAddr = "127.0.0.1:1234"
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		res := w.Result()
		b, _ := io.ReadAll(res.Body)
		if res.Header.Get("Cache-Control") != "no-store" || res.Header.Get("Pragma") != "no-cache" {
			t.Fatalf("%d without no-store/no-cache", res.StatusCode)
		}
		if res.StatusCode == http.StatusOK {
			var tr tokenResponse
			if err := json.Unmarshal(b, &tr); err != nil || tr.TokenType != "Bearer" || tr.ExpiresIn <= 0 {
				t.Fatalf("bad 200 body %s", b)
			}
			u, err := jose.Parse(tr.AccessToken, 0)
			if err != nil {
				t.Fatalf("issued token does not parse: %v", err)
			}
			if _, err := u.Verify(ks, jose.VerificationAlgorithms()); err != nil {
				t.Fatalf("issued token does not verify: %v", err)
			}
			return
		}
		if msg := validErrorBody(b); msg != "" {
			t.Fatalf("%d: %s: %s", res.StatusCode, msg, b)
		}
		var eb struct{ Error string }
		_ = json.Unmarshal(b, &eb)
		ok := false
		for _, c := range allowed[res.StatusCode] {
			ok = ok || c == eb.Error
		}
		if !ok {
			t.Fatalf("status %d with error %q", res.StatusCode, eb.Error)
		}
		if (res.StatusCode == 401) != (res.Header.Get("WWW-Authenticate") == `Basic realm="tokengate"`) {
			t.Fatalf("status %d, WWW-Authenticate %q", res.StatusCode, res.Header.Get("WWW-Authenticate"))
		}
		if strings.Contains(string(b), svcSecret) {
			t.Fatal("answer echoes the secret")
		}
	})
}

// newFuzzIssuer is an issuer whose limiter never limits, so that the fuzzer keeps reaching the
// success path (the limiter has its own tests): the limiter's own clock moves an hour per
// reading, so no two failures ever share a window.
func newFuzzIssuer(tb testing.TB) *Issuer {
	tb.Helper()
	cfg := testConfig("https://tg.example.com")
	var ticks atomic.Int64
	hourly := func() time.Time { return time.Unix(ticks.Add(3600), 0) }
	iss, err := New(cfg, Options{Limiter: authlimit.New(authlimit.Options{Now: hourly})})
	if err != nil {
		tb.Fatal(err)
	}
	return iss
}

// BenchmarkTokenEndpoint is one token request end to end through the handler in process:
// parsing, client authentication, ES256 signing and the JSON answer.
func BenchmarkTokenEndpoint(b *testing.B) {
	iss := newFuzzIssuer(b)
	h := iss.Handler()
	body := "grant_type=client_credentials&scope=read+write&audience=orders"
	auth := encodeBasic(svcID, svcSecret)
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, PathToken, strings.NewReader(body))
		r.Header.Set("Authorization", auth)
		r.Header.Set("Content-Type", formCT)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// BenchmarkTokenEndpointRejected is a wrong secret: the cost an attacker imposes per guess.
func BenchmarkTokenEndpointRejected(b *testing.B) {
	iss := newFuzzIssuer(b)
	h := iss.Handler()
	auth := encodeBasic(svcID, "wrong")
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, PathToken, strings.NewReader("grant_type=client_credentials"))
		r.Header.Set("Authorization", auth)
		r.Header.Set("Content-Type", formCT)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusUnauthorized {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// BenchmarkMint signs one `mint` route token, per key algorithm.
func BenchmarkMint(b *testing.B) {
	for _, kid := range []string{"k1", "ed", "rsa"} {
		b.Run(keyConfig(kid).Alg, func(b *testing.B) {
			cfg := testConfig("https://tg.example.com")
			cfg.Keys = []KeyConfig{keyConfig(kid), keyConfig("k2")}
			iss, err := New(cfg, Options{})
			if err != nil {
				b.Fatal(err)
			}
			r := MintRequest{Subject: "alice", ClientID: "web", Audience: "billing", Scopes: []string{"billing.read"},
				TTL: 5 * time.Minute, NotAfter: time.Now().Add(time.Hour)}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := iss.Mint(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIntrospect verifies one valid token through the introspection handler.
func BenchmarkIntrospect(b *testing.B) {
	iss := newFuzzIssuer(b)
	h := iss.Handler()
	tok, _, err := iss.Mint(context.Background(), MintRequest{Subject: "alice", Audience: "billing"})
	if err != nil {
		b.Fatal(err)
	}
	body := "token=" + tok
	auth := encodeBasic(svcID, svcSecret)
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, PathIntrospect, strings.NewReader(body))
		r.Header.Set("Authorization", auth)
		r.Header.Set("Content-Type", formCT)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `"active":true`) {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}
