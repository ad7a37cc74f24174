package upstream

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const accessType = "urn:ietf:params:oauth:token-type:access_token"

// exchangeOK answers an RFC 8693 §2.2.1 response: xt-<n> for expires_in seconds (nil: omitted).
func exchangeOK(expiresIn any) func(w http.ResponseWriter, r *http.Request, n int64) {
	return func(w http.ResponseWriter, r *http.Request, n int64) {
		body := map[string]any{"access_token": fmt.Sprintf("xt-%d", n), "token_type": "Bearer",
			"issued_token_type": accessType}
		if expiresIn != nil {
			body["expires_in"] = expiresIn
		}
		writeJSON(w, 200, body)
	}
}

func baseTE(i *idp) TokenExchange {
	return TokenExchange{TokenURL: i.url(), ClientID: "gw",
		Auth:    ClientSecretAuth{ClientID: "gw", Secret: "gw-secret-value"},
		Timeout: 500 * time.Millisecond}
}

func newTESource(t *testing.T, c *Cache, te TokenExchange) *TokenExchangeSource {
	t.Helper()
	s, err := NewTokenExchangeSource(c, "orders", te)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func callerFor(tok string, exp time.Time) Caller {
	return Caller{Subject: "alice", Bearer: tok, BearerSum: sha256.Sum256([]byte(tok)), Expiry: exp}
}

func TestTokenExchangeParameters(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*TokenExchange)
		want map[string]string // form fields; "" means absent
		body bool
	}{
		{name: "defaults", mod: func(*TokenExchange) {},
			want: map[string]string{"subject_token_type": accessType, "requested_token_type": accessType,
				"audience": "", "resource": "", "scope": "", "client_secret": ""}},
		{name: "everything", mod: func(te *TokenExchange) {
			te.Audience, te.Resource, te.Scopes = "https://orders.example.com", "https://orders.example.com/api", []string{"orders.read", "orders.write"}
			te.SubjectTokenType = "urn:ietf:params:oauth:token-type:jwt"
		}, want: map[string]string{"audience": "https://orders.example.com", "resource": "https://orders.example.com/api",
			"scope": "orders.read orders.write", "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"}},
		{name: "client_secret_post", body: true, mod: func(te *TokenExchange) {
			te.Auth = ClientSecretAuth{ClientID: "gw", Secret: "gw-secret-value", Style: AuthStyleBody}
		}, want: map[string]string{"client_id": "gw", "client_secret": "gw-secret-value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := newIDP(t)
			i.set(exchangeOK(300))
			clk := newClock()
			te := baseTE(i)
			tc.mod(&te)
			s := newTESource(t, newTestCache(t, clk, nil), te)
			tok, err := s.Token(bg, callerFor("caller-token-1", clk.Now().Add(time.Hour)))
			if err != nil || tok.AccessToken != "xt-1" {
				t.Fatalf("Token = %+v, %v", tok, err)
			}
			got := i.last()
			if got.method != http.MethodPost || got.contentType != "application/x-www-form-urlencoded" {
				t.Fatalf("method %s, content type %s", got.method, got.contentType)
			}
			if g := got.form.Get("grant_type"); g != GrantTypeTokenExchange {
				t.Errorf("grant_type = %q", g)
			}
			if g := got.form.Get("subject_token"); g != "caller-token-1" {
				t.Errorf("subject_token = %q", g)
			}
			for k, v := range tc.want {
				if g := got.form.Get(k); g != v {
					t.Errorf("%s = %q, want %q", k, g, v)
				}
			}
			if tc.body == got.hasBasic {
				t.Errorf("Basic auth present = %v with body style %v", got.hasBasic, tc.body)
			}
			if !tc.body && (got.user != "gw" || got.pass != "gw-secret-value") {
				t.Errorf("Basic credentials %q:%q", got.user, got.pass)
			}
		})
	}
}

func TestTokenExchangeCachedPerCaller(t *testing.T) {
	i := newIDP(t)
	i.set(exchangeOK(300))
	clk := newClock()
	c := newTestCache(t, clk, nil)
	s := newTESource(t, c, baseTE(i))
	exp := clk.Now().Add(time.Hour)
	a1, _ := s.Token(bg, callerFor("token-a", exp))
	b1, _ := s.Token(bg, callerFor("token-b", exp))
	a2, _ := s.Token(bg, callerFor("token-a", exp))
	// BearerSum unset: the source hashes the token itself, to the same key.
	a3, err := s.Token(bg, Caller{Bearer: "token-a", Expiry: exp})
	if err != nil {
		t.Fatal(err)
	}
	if a1.AccessToken != a2.AccessToken || a1.AccessToken != a3.AccessToken || a1.AccessToken == b1.AccessToken {
		t.Fatalf("tokens a=%s,%s,%s b=%s", a1.AccessToken, a2.AccessToken, a3.AccessToken, b1.AccessToken)
	}
	if n := i.n(); n != 2 {
		t.Fatalf("IdP calls = %d, want 2 (one per caller token)", n)
	}
	// Another route with the same settings does not share the caller's token.
	other, _ := NewTokenExchangeSource(c, "billing", baseTE(i))
	if tok, _ := other.Token(bg, callerFor("token-a", exp)); tok.AccessToken == a1.AccessToken || i.n() != 3 {
		t.Fatalf("another route shared the token (calls %d)", i.n())
	}
}

func TestTokenExchangeNeverPastCallerExp(t *testing.T) {
	i := newIDP(t)
	i.set(exchangeOK(3600)) // the IdP's token would live an hour
	clk := newClock()
	s := newTESource(t, newTestCache(t, clk, nil), baseTE(i))
	exp := clk.Now().Add(30 * time.Second)
	c := callerFor("short-lived", exp)
	tok, err := s.Token(bg, c)
	if err != nil || !tok.Expiry.Equal(exp) {
		t.Fatalf("Expiry = %v, want the caller's exp %v (%v)", tok.Expiry, exp, err)
	}
	// Past the refresh point of a capped token: served as is, no second exchange (it would end
	// at the same instant).
	clk.Advance(28 * time.Second)
	if tok2, err := s.Token(bg, c); err != nil || tok2.AccessToken != tok.AccessToken || i.n() != 1 {
		t.Fatalf("near exp: %+v, %v, calls %d", tok2, err, i.n())
	}
	// At and after the caller's exp: never served, and nothing exchanged for the expired token.
	clk.Advance(2 * time.Second)
	_, err = s.Token(bg, c)
	if !errors.Is(err, ErrExchangeRefused) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("after exp: %v", err)
	}
	if i.n() != 1 {
		t.Fatalf("IdP called for an expired subject: %d calls", i.n())
	}
}

func TestTokenExchangeShortIdPTokenRefreshed(t *testing.T) {
	i := newIDP(t)
	i.set(exchangeOK(60))
	clk := newClock()
	c := newTestCache(t, clk, nil)
	s := newTESource(t, c, baseTE(i))
	caller := callerFor("long-lived", clk.Now().Add(time.Hour))
	tok, _ := s.Token(bg, caller)
	if want := clk.Now().Add(time.Minute); !tok.Expiry.Equal(want) {
		t.Fatalf("Expiry %v, want %v", tok.Expiry, want)
	}
	clk.Advance(55 * time.Second) // in the last 10 s: refreshed before use
	tok2, err := s.Token(bg, caller)
	if err != nil || tok2.AccessToken == tok.AccessToken || i.n() != 2 {
		t.Fatalf("refresh: %+v %v calls %d", tok2, err, i.n())
	}
}

func TestTokenExchangeSingleFlight(t *testing.T) {
	i := newIDP(t)
	ok := exchangeOK(300)
	i.set(func(w http.ResponseWriter, r *http.Request, n int64) {
		time.Sleep(50 * time.Millisecond)
		ok(w, r, n)
	})
	clk := newClock()
	s := newTESource(t, newTestCache(t, clk, nil), baseTE(i))
	caller := callerFor("one-caller", clk.Now().Add(time.Hour))
	var wg sync.WaitGroup
	toks := make([]string, 50)
	errs := make([]error, 50)
	for k := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := s.Token(bg, caller)
			toks[k], errs[k] = tok.AccessToken, err
		}()
	}
	wg.Wait()
	for k := range 50 {
		if errs[k] != nil || toks[k] != "xt-1" {
			t.Fatalf("Check %d: %q, %v", k, toks[k], errs[k])
		}
	}
	if n := i.n(); n != 1 {
		t.Fatalf("IdP calls = %d, want 1 for 50 concurrent Checks with one caller token", n)
	}
}

// teMemStore is a Store in memory, shared by two Caches as Redis is by two replicas.
type teMemStore struct {
	mu     sync.Mutex
	tokens map[Key]Token
	locks  map[Key]bool
}

func (m *teMemStore) Load(_ context.Context, k Key) (Token, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[k]
	return t, ok, nil
}

func (m *teMemStore) Save(_ context.Context, k Key, t Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tokens[k] = t
	return nil
}

func (m *teMemStore) TryLock(_ context.Context, k Key) (func(), bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.locks[k] {
		return nil, false, nil
	}
	m.locks[k] = true
	return func() { m.mu.Lock(); delete(m.locks, k); m.mu.Unlock() }, true, nil
}

func TestTokenExchangeSharedThroughStore(t *testing.T) {
	i := newIDP(t)
	i.set(exchangeOK(300))
	clk := newClock()
	st := &teMemStore{tokens: map[Key]Token{}, locks: map[Key]bool{}}
	s1 := newTESource(t, newTestCache(t, clk, func(o *Options) { o.Store = st }), baseTE(i))
	s2 := newTESource(t, newTestCache(t, clk, func(o *Options) { o.Store = st }), baseTE(i))
	caller := callerFor("fleet-caller", clk.Now().Add(time.Hour))
	t1, err1 := s1.Token(bg, caller)
	t2, err2 := s2.Token(bg, caller)
	if err1 != nil || err2 != nil || t1.AccessToken != t2.AccessToken || i.n() != 1 {
		t.Fatalf("replicas: %q %v / %q %v, IdP calls %d", t1.AccessToken, err1, t2.AccessToken, err2, i.n())
	}
}

func TestTokenExchangeErrors(t *testing.T) {
	const secretBody = "SECRET-BODY-do-not-log"
	jsonErr := func(status int, code string) func(w http.ResponseWriter, r *http.Request, n int64) {
		return func(w http.ResponseWriter, r *http.Request, n int64) {
			writeJSON(w, status, map[string]any{"error": code, "error_description": secretBody})
		}
	}
	raw := func(status int, ct, body string) func(w http.ResponseWriter, r *http.Request, n int64) {
		return func(w http.ResponseWriter, r *http.Request, n int64) {
			w.Header().Set("Content-Type", ct)
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		}
	}
	answer := func(m map[string]any) func(w http.ResponseWriter, r *http.Request, n int64) {
		return func(w http.ResponseWriter, r *http.Request, n int64) { writeJSON(w, 200, m) }
	}
	for _, tc := range []struct {
		name    string
		h       func(w http.ResponseWriter, r *http.Request, n int64)
		down    bool // the IdP is not listening
		refused bool // else unavailable
		reason  string
	}{
		{name: "invalid_grant", h: jsonErr(400, "invalid_grant"), refused: true},
		{name: "invalid_target", h: jsonErr(400, "invalid_target"), refused: true},
		{name: "invalid_scope", h: jsonErr(400, "invalid_scope"), refused: true},
		{name: "unauthorized_client", h: jsonErr(400, "unauthorized_client"), refused: true},
		{name: "invalid_request", h: jsonErr(400, "invalid_request"), refused: true},
		{name: "own client rejected 401", h: jsonErr(401, "invalid_client"), reason: ReasonRejected},
		{name: "own client rejected 400", h: jsonErr(400, "invalid_client"), reason: ReasonRejected},
		{name: "other 400 code", h: jsonErr(400, "unsupported_grant_type"), reason: ReasonIdPError},
		{name: "403", h: jsonErr(403, "invalid_grant"), reason: ReasonIdPError},
		{name: "429", h: jsonErr(429, "slow_down"), reason: ReasonIdPError},
		{name: "500", h: raw(500, "text/plain", secretBody), reason: ReasonIdPError},
		{name: "400 not JSON", h: raw(400, "text/html", secretBody), reason: ReasonIdPError},
		{name: "200 not JSON", h: raw(200, "text/html", secretBody), reason: ReasonInvalidResponse},
		{name: "200 form encoded", h: raw(200, "application/x-www-form-urlencoded", "access_token="+secretBody+"&token_type=bearer"), reason: ReasonInvalidResponse},
		{name: "200 bad JSON", h: raw(200, "application/json", `{"access_token":"`+secretBody), reason: ReasonInvalidResponse},
		{name: "no access_token", h: answer(map[string]any{"token_type": "Bearer", "issued_token_type": accessType}), reason: ReasonInvalidResponse},
		{name: "access_token not a string", h: answer(map[string]any{"access_token": 5, "token_type": "Bearer", "issued_token_type": accessType}), reason: ReasonInvalidResponse},
		{name: "token_type MAC", h: answer(map[string]any{"access_token": secretBody, "token_type": "MAC", "issued_token_type": accessType}), reason: ReasonBadTokenType},
		{name: "no token_type", h: answer(map[string]any{"access_token": secretBody, "issued_token_type": accessType}), reason: ReasonBadTokenType},
		{name: "issued_token_type other", h: answer(map[string]any{"access_token": secretBody, "token_type": "N_A", "issued_token_type": "urn:ietf:params:oauth:token-type:id_token"}), reason: ReasonBadIssuedType},
		{name: "no issued_token_type", h: answer(map[string]any{"access_token": secretBody, "token_type": "Bearer"}), reason: ReasonBadIssuedType},
		{name: "expires_in 0", h: answer(map[string]any{"access_token": secretBody, "token_type": "Bearer", "issued_token_type": accessType, "expires_in": 0}), reason: ReasonBadExpiresIn},
		{name: "hang", reason: ReasonTimeout},
		{name: "unreachable", down: true, reason: ReasonConnection},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := newIDP(t)
			h := tc.h
			if tc.name == "hang" {
				h = i.hang
			}
			if h != nil {
				i.set(h)
			}
			te := baseTE(i)
			te.Timeout = 200 * time.Millisecond
			if tc.down {
				i.srv.Close()
			}
			clk := newClock()
			log, buf := newLogger()
			s := newTESource(t, newTestCache(t, clk, func(o *Options) { o.Logger = log }), te)
			_, err := s.Token(bg, callerFor("subject-token-value", clk.Now().Add(time.Hour)))
			if err == nil {
				t.Fatal("no error")
			}
			if got := errors.Is(err, ErrExchangeRefused); got != tc.refused {
				t.Fatalf("refused = %v: %v", got, err)
			}
			if got := errors.Is(err, ErrUnavailable); got == tc.refused {
				t.Fatalf("unavailable = %v: %v", got, err)
			}
			var ue *Error
			if !errors.As(err, &ue) || (tc.reason != "" && ue.Reason != tc.reason) {
				t.Fatalf("reason: %v, want %q", err, tc.reason)
			}
			for _, leak := range []string{secretBody, "subject-token-value", "gw-secret-value"} {
				if strings.Contains(err.Error(), leak) || strings.Contains(buf.String(), leak) {
					t.Fatalf("%q leaked: %v / %s", leak, err, buf.String())
				}
			}
			// A refusal is remembered for that subject token: the repeat does not reach the IdP
			// and is still a refusal.
			if tc.refused {
				n := i.n()
				_, err := s.Token(bg, callerFor("subject-token-value", clk.Now().Add(time.Hour)))
				if !errors.Is(err, ErrExchangeRefused) || i.n() != n {
					t.Fatalf("repeat: %v, calls %d → %d", err, n, i.n())
				}
			}
		})
	}
}

func TestTokenExchangeValidate(t *testing.T) {
	ok := TokenExchange{TokenURL: "https://idp.example.com/token", ClientID: "gw", Auth: ClientSecretAuth{ClientID: "gw", Secret: "s"}}
	for _, tc := range []struct {
		name string
		mod  func(*TokenExchange)
		want string
	}{
		{"ok", func(*TokenExchange) {}, ""},
		{"http", func(te *TokenExchange) { te.TokenURL = "http://idp.example.com/token" }, "token_url"},
		{"client_id", func(te *TokenExchange) { te.ClientID = "" }, "client_id"},
		{"auth", func(te *TokenExchange) { te.Auth = nil }, "client authentication"},
		{"style", func(te *TokenExchange) { te.Auth = ClientSecretAuth{Style: "header"} }, "auth_style"},
		{"scope", func(te *TokenExchange) { te.Scopes = []string{"a b"} }, "scopes"},
		{"resource", func(te *TokenExchange) { te.Resource = "orders" }, "resource"},
		{"type", func(te *TokenExchange) { te.RequestedTokenType = "access token" }, "token types"},
	} {
		te := ok
		tc.mod(&te)
		err := te.Validate(false)
		if (err == nil) != (tc.want == "") || err != nil && !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func FuzzExchangeAnswer(f *testing.F) {
	f.Add(200, "application/json", []byte(`{"access_token":"a","token_type":"Bearer","issued_token_type":"`+accessType+`","expires_in":60}`))
	f.Add(200, "application/json", []byte(`{"access_token":"a","token_type":"N_A","issued_token_type":"`+accessType+`","expires_in":"60"}`))
	f.Add(400, "application/json; charset=utf-8", []byte(`{"error":"invalid_grant"}`))
	f.Add(401, "text/plain", []byte(`nope`))
	f.Add(200, "application/json", []byte(`{"access_token":"a"} {}`))
	f.Fuzz(func(t *testing.T, status int, ct string, body []byte) {
		ans, err := ParseExchangeAnswer(status, ct, body, accessType)
		if err == nil {
			if status != 200 || ans.AccessToken == "" || !isVSChars(ans.AccessToken) || ans.ExpiresIn < 0 {
				t.Fatalf("accepted %d %q: %+v", status, body, ans)
			}
			return
		}
		if errors.Is(err, ErrExchangeRefused) == errors.Is(err, ErrUnavailable) {
			t.Fatalf("error is both or neither refused and unavailable: %v", err)
		}
		if len(body) > 8 && strings.Contains(err.Error(), string(body)) {
			t.Fatalf("error quotes the body: %v", err)
		}
	})
}
