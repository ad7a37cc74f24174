package introspect

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// idp is a real introspection endpoint: it checks the RFC 7662 §2.1 request and answers with
// the body (and status) the test sets, counting calls.
type idp struct {
	srv    *httptest.Server
	calls  atomic.Int64
	mu     sync.Mutex
	status int
	body   string
	hang   chan struct{} // when non-nil, the handler waits for it to close
	t      *testing.T
}

func newIDP(t *testing.T) *idp {
	i := &idp{status: 200, body: `{"active":true,"sub":"alice"}`, t: t}
	i.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i.calls.Add(1)
		user, pass, ok := r.BasicAuth()
		// RFC 6749 §2.3.1: both are form-encoded inside Basic.
		user, _ = url.QueryUnescape(user)
		pass, _ = url.QueryUnescape(pass)
		if r.Method != http.MethodPost || !ok || user != "gw" || pass != "s3cr%t" ||
			r.FormValue("token_type_hint") != "access_token" || r.FormValue("token") == "" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		i.mu.Lock()
		status, body, hang := i.status, i.body, i.hang
		i.mu.Unlock()
		if hang != nil {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(i.srv.Close)
	return i
}

func (i *idp) set(status int, body string) {
	i.mu.Lock()
	i.status, i.body = status, body
	i.mu.Unlock()
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClient(t *testing.T, i *idp, clk *clock) *Client {
	t.Helper()
	c, err := New(Config{Provider: "curity", URL: i.srv.URL + "/introspect", ClientID: "gw",
		Auth: secretAuth{"gw", "s3cr%t"}, CacheTTL: time.Minute, NegativeTTL: 10 * time.Second,
		Timeout: 500 * time.Millisecond, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ask(c *Client, token string) (*Answer, error) {
	return c.Introspect(context.Background(), token, sha256.Sum256([]byte(token)))
}

func TestCacheLifetimes(t *testing.T) {
	base := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name  string
		body  string
		fresh time.Duration // still cached after this
		stale time.Duration // refetched after this
	}{
		{"active without exp: cache_ttl", `{"active":true}`, 59 * time.Second, 60 * time.Second},
		{"active, exp later than cache_ttl", `{"active":true,"exp":1800000600}`, 59 * time.Second, 60 * time.Second},
		{"active, exp sooner: never past exp", `{"active":true,"exp":1800000020}`, 19 * time.Second, 20 * time.Second},
		{"inactive: negative_ttl", `{"active":false}`, 9 * time.Second, 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := newIDP(t)
			i.set(200, tt.body)
			clk := &clock{t: base}
			c := newClient(t, i, clk)
			for range 3 {
				if _, err := ask(c, "opaque-1"); err != nil {
					t.Fatal(err)
				}
			}
			if n := i.calls.Load(); n != 1 {
				t.Fatalf("calls = %d, want 1", n)
			}
			clk.Add(tt.fresh)
			_, _ = ask(c, "opaque-1")
			if n := i.calls.Load(); n != 1 {
				t.Fatalf("after %s: calls = %d, want 1", tt.fresh, n)
			}
			clk.Add(tt.stale - tt.fresh)
			_, _ = ask(c, "opaque-1")
			if n := i.calls.Load(); n != 2 {
				t.Fatalf("after %s: calls = %d, want 2", tt.stale, n)
			}
		})
	}
}

func TestExpiredAnswerIsNotCached(t *testing.T) {
	i := newIDP(t)
	i.set(200, `{"active":true,"exp":1000}`)
	c := newClient(t, i, &clock{t: time.Unix(1_800_000_000, 0)})
	for range 2 {
		ans, err := ask(c, "tok")
		if err != nil || !ans.Active || ans.Expiry.Unix() != 1000 {
			t.Fatalf("answer %+v, %v", ans, err)
		}
	}
	if n := i.calls.Load(); n != 2 {
		t.Fatalf("calls = %d, want 2 (an answer past its exp is never reused)", n)
	}
}

func TestSingleFlight(t *testing.T) {
	i := newIDP(t)
	i.hang = make(chan struct{})
	c := newClient(t, i, &clock{t: time.Unix(1_800_000_000, 0)})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			ans, err := ask(c, "same-token")
			if err == nil && !ans.Active {
				err = errors.New("inactive")
			}
			errs <- err
		})
	}
	time.Sleep(100 * time.Millisecond) // let all 50 join the one call
	i.mu.Lock()
	close(i.hang)
	i.mu.Unlock()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := i.calls.Load(); n != 1 {
		t.Fatalf("calls = %d, want 1 for 50 concurrent requests with one token", n)
	}
}

func TestIdPDown(t *testing.T) {
	i := newIDP(t)
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	c := newClient(t, i, clk)
	if _, err := ask(c, "cached"); err != nil {
		t.Fatal(err)
	}
	i.srv.Close()
	// A fresh cached answer still serves.
	if ans, err := ask(c, "cached"); err != nil || !ans.Active {
		t.Fatalf("cached answer while down: %+v, %v", ans, err)
	}
	// Nothing cached: unavailable.
	if _, err := ask(c, "other"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	// Past cache_ttl the answer is not reused.
	clk.Add(61 * time.Second)
	if _, err := ask(c, "cached"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestHangTimesOut(t *testing.T) {
	i := newIDP(t)
	i.hang = make(chan struct{})
	defer close(i.hang)
	c := newClient(t, i, &clock{t: time.Unix(1_800_000_000, 0)})
	start := time.Now()
	if _, err := ask(c, "tok"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %s", d)
	}
}

func TestRedirectIsFailure(t *testing.T) {
	target := newIDP(t)
	redir := httptest.NewServer(http.RedirectHandler(target.srv.URL, http.StatusTemporaryRedirect))
	defer redir.Close()
	c, err := New(Config{Provider: "p", URL: redir.URL, ClientID: "gw", Auth: secretAuth{"gw", "s3cr%t"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ask(c, "tok"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if target.calls.Load() != 0 {
		t.Fatal("redirect followed")
	}
}

func TestMalformedAnswersAreFailures(t *testing.T) {
	big := `{"active":true,"x":"` + strings.Repeat("a", MaxAnswerBytes) + `"}`
	tests := []struct {
		name   string
		status int
		body   string
	}{
		{"500", 500, `{"active":true}`},
		{"401", 401, `{"active":true}`},
		{"204", 204, ``},
		{"not JSON", 200, `active=true`},
		{"empty", 200, ``},
		{"null", 200, `null`},
		{"array", 200, `[{"active":true}]`},
		{"string", 200, `"active"`},
		{"no active", 200, `{"sub":"alice"}`},
		{"active string", 200, `{"active":"true"}`},
		{"active number", 200, `{"active":1}`},
		{"active null", 200, `{"active":null}`},
		{"trailing data", 200, `{"active":true} {"active":false}`},
		{"truncated", 200, `{"active":true`},
		{"exp string", 200, `{"active":true,"exp":"soon"}`},
		{"exp negative", 200, `{"active":true,"exp":-5}`},
		{"exp huge", 200, `{"active":true,"exp":1e300}`},
		{"too large", 200, big},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ans, err := ParseAnswer(tt.status, []byte(tt.body)); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("ParseAnswer = %+v, %v; want ErrUnavailable", ans, err)
			}
			i := newIDP(t)
			i.set(tt.status, tt.body)
			c := newClient(t, i, &clock{t: time.Unix(1_800_000_000, 0)})
			for range 2 {
				if ans, err := ask(c, "tok"); !errors.Is(err, ErrUnavailable) {
					t.Fatalf("Introspect = %+v, %v; want ErrUnavailable", ans, err)
				}
			}
			if n := i.calls.Load(); n != 2 {
				t.Fatalf("calls = %d: a failure must not be cached", n)
			}
		})
	}
}

func TestGoodAnswers(t *testing.T) {
	ans, err := ParseAnswer(200, []byte(`{"active":true,"sub":"alice","client_id":"app","scope":"a b","exp":1800000000.5}`))
	if err != nil || !ans.Active || ans.Claims["sub"] != "alice" || ans.Expiry.Unix() != 1800000000 {
		t.Fatalf("%+v, %v", ans, err)
	}
	ans, err = ParseAnswer(200, []byte(`{"active":false,"sub":"ignored"}`))
	if err != nil || ans.Active || ans.Claims != nil {
		t.Fatalf("%+v, %v", ans, err)
	}
}

func TestNewRefusesBadSettings(t *testing.T) {
	for _, cfg := range []Config{
		{URL: "http://idp.example.com/introspect", ClientID: "a", Auth: secretAuth{"a", "b"}},
		{URL: "https://u:p@idp.example.com/introspect", ClientID: "a", Auth: secretAuth{"a", "b"}},
		{URL: "https://idp.example.com/introspect", Auth: secretAuth{"", "b"}},
		{URL: "https://idp.example.com/introspect", ClientID: "a"}, // no client authentication
		{URL: "https://idp.example.com/introspect", ClientID: "a", Auth: secretAuth{"a", "b"}, CacheTTL: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg.URL)
		}
	}
}

// FuzzIntrospectionAnswer: no body makes the parser panic, and an answer is active only when the
// body is a JSON object whose active member is true.
func FuzzIntrospectionAnswer(f *testing.F) {
	for _, s := range []string{`{"active":true}`, `{"active":false}`, `{"active":"true"}`, `null`, `[]`,
		`{"active":true,"exp":1e9}`, `{"active":true,"exp":"x"}`, `{"active":true}x`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ans, err := ParseAnswer(200, body)
		if err != nil {
			if !errors.Is(err, ErrUnavailable) || ans != nil {
				t.Fatalf("error %v with answer %v", err, ans)
			}
			return
		}
		if ans.Active && ans.Claims["active"] != true {
			t.Fatalf("active without active:true")
		}
		var m map[string]any
		if json.Unmarshal(body, &m) != nil {
			t.Fatalf("answer from a body that is not JSON: %q", body)
		}
		if b, ok := m["active"].(bool); !ok || b != ans.Active {
			t.Fatalf("answer %v from active %v", ans.Active, m["active"])
		}
	})
}

// secretAuth is client_secret_basic (RFC 6749 §2.3.1), as upstream.ClientSecretAuth sends it;
// upstream imports this package, so these tests cannot use that one.
type secretAuth struct{ id, secret string }

func (a secretAuth) Authenticate(_ context.Context, _ string, _ url.Values, h http.Header) error {
	r := http.Request{Header: h}
	r.SetBasicAuth(url.QueryEscape(a.id), url.QueryEscape(a.secret))
	return nil
}
