package verify

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tokengate/tokengate/internal/introspect"
)

// answers is a real introspection endpoint answering per token from a table.
type answers struct {
	mu    sync.Mutex
	byTok map[string]string // token -> body; missing: 500
	calls atomic.Int64
	srv   *httptest.Server
}

func newAnswers(t *testing.T) *answers {
	a := &answers{byTok: map[string]string{}}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.calls.Add(1)
		a.mu.Lock()
		body, ok := a.byTok[r.FormValue("token")]
		a.mu.Unlock()
		if !ok {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func TestIntrospectionDispatch(t *testing.T) {
	a := newAnswers(t)
	f := newFixture(t, func(o *Options) {
		c, err := introspect.New(introspect.Config{Provider: "curity", URL: a.srv.URL, ClientID: "gw",
			Auth: secretAuth{"gw", "secret"}, Now: newClock().Now})
		if err != nil {
			t.Fatal(err)
		}
		o.Providers = append(o.Providers, Provider{Name: "curity", Issuer: "https://curity.example.com",
			Audiences: []string{"api://gateway"}, ClockSkew: skew, Introspection: c})
	})
	f.ready(t)
	now := f.clock.Now().Unix()
	exp := func(d int64) string { return itoa(now + d) }
	a.byTok = map[string]string{
		"good":        `{"active":true,"sub":"bob","client_id":"app","scope":"read write","exp":` + exp(300) + `,"iss":"https://curity.example.com","aud":["x","api://gateway"],"tenant":"acme"}`,
		"bare":        `{"active":true,"sub":"carol"}`,
		"inactive":    `{"active":false}`,
		"foreign-iss": `{"active":true,"sub":"bob","exp":` + exp(300) + `,"iss":"https://evil.example.com"}`,
		"foreign-aud": `{"active":true,"sub":"bob","exp":` + exp(300) + `,"aud":"api://other"}`,
		"stale":       `{"active":true,"sub":"bob","exp":` + exp(-31) + `}`,
		"in-skew":     `{"active":true,"sub":"bob","exp":` + exp(-29) + `}`,
		"future-nbf":  `{"active":true,"sub":"bob","nbf":` + exp(60) + `}`,
		"malformed":   `{"sub":"bob"}`,
	}
	jwt := f.token("k1", f.claims())
	tests := []struct {
		name, token string
		providers   []string
		kind        Kind
		desc        string // "" allowed
		sub         string
	}{
		{"JWT of the JWT provider is not introspected", jwt, []string{"corp", "curity"}, 0, "", "alice"},
		{"opaque active", "good", []string{"corp", "curity"}, 0, "", "bob"},
		{"answer without iss, aud, exp", "bare", []string{"curity"}, 0, "", "carol"},
		{"inactive", "inactive", []string{"corp", "curity"}, KindInvalid, DescInactive, ""},
		{"foreign iss", "foreign-iss", []string{"curity"}, KindInvalid, DescIssuer, ""},
		{"foreign aud", "foreign-aud", []string{"curity"}, KindInvalid, DescAudience, ""},
		{"expired", "stale", []string{"curity"}, KindInvalid, DescExpired, ""},
		{"expired within skew", "in-skew", []string{"curity"}, 0, "", "bob"},
		{"not yet valid", "future-nbf", []string{"curity"}, KindInvalid, DescNotYetValid, ""},
		{"no active member", "malformed", []string{"curity"}, KindUnavailable, DescIntrospectUnavailable, ""},
		{"IdP failure", "unknown-to-idp", []string{"curity"}, KindUnavailable, DescIntrospectUnavailable, ""},
		{"opaque on a JWT-only route", "good", []string{"corp"}, KindInvalid, DescMalformed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := f.verify(tt.token, tt.providers...)
			if tt.desc != "" {
				expectError(t, err, tt.kind, tt.desc, tt.token)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Subject != tt.sub {
				t.Fatalf("sub %q, want %q", p.Subject, tt.sub)
			}
		})
	}
	before := a.calls.Load()
	if _, err := f.verify(jwt, "corp", "curity"); err != nil {
		t.Fatal(err)
	}
	if a.calls.Load() != before {
		t.Fatal("a JWT of a JWT provider was introspected")
	}
	p, err := f.verify("good", "curity")
	if err != nil {
		t.Fatal(err)
	}
	if p.Provider != "curity" || p.ClientID != "app" || p.Issuer != "https://curity.example.com" ||
		len(p.Scopes) != 2 || p.Scopes[1] != "write" || p.Scope() != "read write" || p.Expiry.Unix() != now+300 || p.Claims["tenant"] != "acme" ||
		p.TokenHash == "" {
		t.Fatalf("principal %+v", p)
	}
	if a.calls.Load() != before {
		t.Fatal("the cached answer was not reused")
	}
}

// TestIntrospectionKeepClaims: KeepClaims applies to answers as to JWTs.
func TestIntrospectionKeepClaims(t *testing.T) {
	a := newAnswers(t)
	a.byTok["tok"] = `{"active":true,"sub":"bob","tenant":"acme","other":"x"}`
	c, err := introspect.New(introspect.Config{Provider: "curity", URL: a.srv.URL, ClientID: "gw", Auth: secretAuth{"gw", "s"}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := New(t.Context(), Options{KeepClaims: []string{"tenant"},
		Providers: []Provider{{Name: "curity", Introspection: c}}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if m := v.Missing(); m != nil {
		t.Fatalf("missing %v", m)
	}
	p, err := v.Verify(t.Context(), "tok", []string{"curity"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Claims) != 1 || p.Claims["tenant"] != "acme" || p.Subject != "bob" {
		t.Fatalf("claims %v", p.Claims)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// secretAuth is client_secret_basic (RFC 6749 §2.3.1), as upstream.ClientSecretAuth sends it;
// upstream imports this package, so these tests cannot use that one.
type secretAuth struct{ id, secret string }

func (a secretAuth) Authenticate(_ context.Context, _ string, _ url.Values, h http.Header) error {
	r := http.Request{Header: h}
	r.SetBasicAuth(url.QueryEscape(a.id), url.QueryEscape(a.secret))
	return nil
}
