package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/testkit"
)

// Row 25: a cold cache and many concurrent callers make exactly one IdP call, and all of them get
// the same token.
func TestConcurrentColdKeyOneIdPCall(t *testing.T) {
	for _, n := range []int{200, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			i := newIDP(t)
			release := make(chan struct{})
			i.set(func(w http.ResponseWriter, r *http.Request, k int64) {
				<-release // hold the answer until every caller is waiting
				i.okHandler(100)(w, r, k)
			})
			c := newTestCache(t, newClock(), nil)
			cc := baseCC(i)
			cc.Timeout = 10 * time.Second
			var wg sync.WaitGroup
			var started atomic.Int64
			toks := make([]string, n)
			errs := make([]error, n)
			for j := range n {
				wg.Go(func() {
					started.Add(1)
					tok, err := c.Fetch(bg, "r", cc)
					toks[j], errs[j] = tok.AccessToken, err
				})
			}
			testkit.WaitFor(t, "callers to start", 5*time.Second, 2*time.Millisecond, func() bool { return started.Load() == int64(n) && i.n() == 1 })
			close(release)
			wg.Wait()
			for j := range n {
				if errs[j] != nil || toks[j] != "tok-1" {
					t.Fatalf("caller %d: %q %v", j, toks[j], errs[j])
				}
			}
			if i.n() != 1 {
				t.Fatalf("IdP calls = %d, want 1", i.n())
			}
		})
	}
}

// A caller that gives up (its ctx canceled) does not fail the others: the IdP call is detached.
func TestCanceledCallerDoesNotFailOthers(t *testing.T) {
	i := newIDP(t)
	release := make(chan struct{})
	i.set(func(w http.ResponseWriter, r *http.Request, n int64) {
		<-release
		i.okHandler(100)(w, r, n)
	})
	c := newTestCache(t, newClock(), nil)
	cc := baseCC(i)
	cc.Timeout = 5 * time.Second
	ctx, cancel := context.WithCancel(bg)
	firstDone := make(chan error, 1)
	go func() {
		_, err := c.Fetch(ctx, "r", cc)
		firstDone <- err
	}()
	testkit.WaitFor(t, "the IdP call", 5*time.Second, 2*time.Millisecond, func() bool { return i.n() == 1 })
	second := make(chan error, 1)
	go func() {
		_, err := c.Fetch(bg, "r", cc)
		second <- err
	}()
	cancel()
	if err := <-firstDone; !errors.Is(err, ErrUnavailable) {
		t.Fatalf("canceled caller: %v", err)
	}
	close(release)
	if err := <-second; err != nil {
		t.Fatalf("second caller failed: %v", err)
	}
	if i.n() != 1 {
		t.Fatalf("IdP calls %d", i.n())
	}
}

// A steady stream of requests across the refresh point: the token is renewed before expiry in
// the background, no request waits for the IdP (it hangs while the first refresh is held), and
// no request ever sees an expired token or one in its last 10 %.
func TestSteadyStreamAcrossRefresh(t *testing.T) {
	i := newIDP(t)
	const life = 100 * time.Second
	hold := make(chan struct{})
	i.set(func(w http.ResponseWriter, r *http.Request, n int64) {
		if n == 2 {
			select { // the first refresh is slow
			case <-hold:
			case <-i.stop: // the test ended early
			}
		}
		i.okHandler(int(life/time.Second))(w, r, n)
	})
	clk := newClock()
	m := metrics.New()
	c := newTestCache(t, clk, func(o *Options) { o.Metrics = m })
	cc := baseCC(i)
	cc.Timeout = 2 * time.Second
	key := CredentialsKey(ModeFetch, cc)
	misses := func() float64 {
		return testkit.CounterValue(t, m, "tokengate_cache_misses_total", map[string]string{"cache": cacheName})
	}
	check := func(step string) Token {
		t.Helper()
		before := misses()
		tok, err := c.Fetch(bg, "r", cc)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		// A request waits for the IdP only on a miss (a cold key, or the last 10 % of the
		// lifetime): counted, not timed. Only the cold request may miss.
		if got := misses() - before; got != 0 && step != "cold" {
			t.Fatalf("%s: the request missed the cache and waited for the IdP", step)
		}
		now := clk.Now()
		if !now.Before(staleAt(tok)) {
			t.Fatalf("%s: served a token in its last 10%% (now %v, expiry %v)", step, now.Sub(tok.IssuedAt), tok.Expiry.Sub(tok.IssuedAt))
		}
		return tok
	}
	first := check("cold")
	// Just past the latest refresh point (83 %): the refresh starts; the IdP is held, and every
	// request still gets the current token at once — no reuseTokenSource-style blocking.
	clk.Advance(84 * time.Second)
	for k := range 50 {
		if tok := check(fmt.Sprint("held refresh ", k)); tok != first {
			t.Fatal("token changed while the refresh is held")
		}
	}
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() { check("concurrent during refresh") })
	}
	wg.Wait()
	testkit.WaitFor(t, "the refresh request", 5*time.Second, 2*time.Millisecond, func() bool { return i.n() == 2 })
	close(hold)
	idle(t, c, key)
	second := check("after refresh")
	if second.AccessToken != "tok-2" || !second.Expiry.After(first.Expiry) {
		t.Fatalf("not renewed: %+v", second)
	}
	// Now a request every second for 10 lifetimes; the IdP answers at once.
	for s := range 1000 {
		clk.Advance(time.Second)
		check(fmt.Sprint("second ", s))
		idle(t, c, key)
	}
	// ~80 % of 100 s per token: 1000 s → about 12 refreshes (jitter ±3 %), never one per request.
	if n := i.n(); n < 12 || n > 16 {
		t.Fatalf("IdP calls = %d over 1000 s of 100 s tokens", n)
	}
}

// In the last 10 % of the lifetime a request waits (at most the timeout) for the refresh; when the
// IdP hangs it still gets the valid cached token after the timeout, never an error.
func TestStaleWindowWaitsBoundedThenServesCached(t *testing.T) {
	i := newIDP(t)
	clk := newClock()
	m := metrics.New()
	c := newTestCache(t, clk, func(o *Options) { o.Metrics = m })
	cc := baseCC(i)
	cc.Timeout = 150 * time.Millisecond
	first, err := c.Fetch(bg, "r", cc)
	if err != nil {
		t.Fatal(err)
	}
	i.set(i.hang)
	clk.Advance(95 * time.Second) // last 10 s of 100 s
	start := time.Now()
	tok, err := c.Fetch(bg, "r", cc)
	took := time.Since(start)
	if err != nil || tok != first {
		t.Fatalf("got %+v %v, want the cached token", tok, err)
	}
	// It waited for the refresh until the 150 ms timeout ended the wait: the timeout was
	// counted before the cached token came back, and the refresh reached the IdP (events, not
	// a lower bound on the time taken).
	if n := testkit.CounterValue(t, m, "tokengate_upstream_token_requests_total", map[string]string{"result": "timeout"}); n < 1 {
		t.Fatal("the cached token came back before the refresh timed out")
	}
	testkit.WaitFor(t, "the refresh request", 5*time.Second, time.Millisecond, func() bool { return i.n() == 2 })
	if took > time.Second {
		t.Fatalf("waited %v, want about the 150 ms timeout", took)
	}
	// The failure put the key in backoff: the next request does not wait at all.
	before := i.n()
	if tok, err := c.Fetch(bg, "r", cc); err != nil || tok != first || i.n() != before {
		t.Fatalf("in backoff: %v, IdP calls %d→%d", err, before, i.n())
	}
	// With a fast IdP again and the backoff over, the stale window refreshes synchronously.
	i.set(i.okHandler(100))
	clk.Advance(2 * time.Second)
	tok, err = c.Fetch(bg, "r", cc)
	if err != nil || tok.AccessToken == first.AccessToken {
		t.Fatalf("stale window: %+v %v", tok, err)
	}
}

// Row 26: the IdP fails (500, 429 + Retry-After, hangs, closes the connection). While a cached
// token is valid every call succeeds; retries are paced by backoff (counted at the IdP); after
// expiry, and on a cold key, calls fail with ErrUnavailable within the timeout.
func TestIdPFailures(t *testing.T) {
	faults := []struct {
		name  string
		h     func(i *idp) func(w http.ResponseWriter, r *http.Request, n int64)
		retry time.Duration // Retry-After sent
	}{
		{name: "500", h: func(*idp) func(http.ResponseWriter, *http.Request, int64) {
			return func(w http.ResponseWriter, r *http.Request, n int64) {
				http.Error(w, "internal", http.StatusInternalServerError)
			}
		}},
		{name: "429 with Retry-After", retry: 20 * time.Second, h: func(*idp) func(http.ResponseWriter, *http.Request, int64) {
			return func(w http.ResponseWriter, r *http.Request, n int64) {
				w.Header().Set("Retry-After", "20")
				writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "slow_down"})
			}
		}},
		{name: "hang", h: func(i *idp) func(http.ResponseWriter, *http.Request, int64) { return i.hang }},
		{name: "connection closed", h: func(*idp) func(http.ResponseWriter, *http.Request, int64) {
			return func(w http.ResponseWriter, r *http.Request, n int64) {
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
			}
		}},
	}
	const timeout = 200 * time.Millisecond
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			i := newIDP(t)
			clk := newClock()
			c := newTestCache(t, clk, nil) // backoff 1 s doubling to 8 s
			cc := baseCC(i)
			cc.Timeout = timeout
			tok, err := c.Fetch(bg, "r", cc)
			if err != nil {
				t.Fatal(err)
			}
			i.set(f.h(i))
			// From the refresh point to expiry, one request per second: all served from cache.
			clk.Advance(79 * time.Second)
			for s := 79; s < 100; s++ {
				before := i.n()
				got, err := c.Fetch(bg, "r", cc)
				if err != nil || got != tok {
					t.Fatalf("t=%ds: %v (token changed: %v)", s, err, got != tok)
				}
				idle(t, c, CredentialsKey(ModeFetch, cc))
				// A request waits at most for one attempt, which its timeout bounds: counted.
				if n := i.n() - before; n > 1 {
					t.Fatalf("t=%ds: %d IdP attempts for one request", s, n)
				}
				clk.Advance(time.Second)
			}
			attempts := i.n() - 1
			// 21 s of requests: without backoff that is 21 attempts. With 1,2,4,8 s (+≤20 %)
			// it is at most 5; with Retry-After 20 s at most 2.
			maxAttempts := int64(5)
			if f.retry > 0 {
				maxAttempts = 2
			}
			if attempts < 1 || attempts > maxAttempts {
				t.Fatalf("IdP attempts while failing = %d, want 1..%d", attempts, maxAttempts)
			}
			// Expired and the IdP still failing: ErrUnavailable, quickly.
			clk.Advance(30 * time.Second) // past any backoff
			before := i.n()
			_, err = c.Fetch(bg, "r", cc)
			if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRejected) {
				t.Fatalf("after expiry: %v", err)
			}
			assertBoundedAttempt(t, "after expiry", i, before, err, f.name == "hang")
			// Immediately again: in backoff, no IdP call, still ErrUnavailable, at once.
			before = i.n()
			if _, err := c.Fetch(bg, "r", cc); !errors.Is(err, ErrUnavailable) || i.n() != before {
				t.Fatalf("in backoff: %v, calls %d→%d", err, before, i.n())
			}
			// Cold key (another client) with the failing IdP.
			cold := cc
			cold.ClientID = "other"
			before = i.n()
			_, err = c.Fetch(bg, "r", cold)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("cold: %v", err)
			}
			assertBoundedAttempt(t, "cold", i, before, err, f.name == "hang")
			// Recovery after the backoff.
			i.set(i.okHandler(100))
			clk.Advance(25 * time.Second)
			if got, err := c.Fetch(bg, "r", cc); err != nil || got == tok {
				t.Fatalf("recovery: %v", err)
			}
		})
	}
}

// Retry-After is honoured: no new attempt before it passes, one right after.
func TestRetryAfterHonoured(t *testing.T) {
	i := newIDP(t)
	i.set(func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Retry-After", "30")
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})
	clk := newClock()
	c := newTestCache(t, clk, nil)
	cc := baseCC(i)
	var ue *Error
	if _, err := c.Fetch(bg, "r", cc); !errors.As(err, &ue) || ue.Status != 503 || ue.RetryAfter != 30*time.Second {
		t.Fatalf("err %+v", err)
	}
	for s := 0; s < 29; s++ {
		clk.Advance(time.Second)
		_, _ = c.Fetch(bg, "r", cc)
	}
	if i.n() != 1 {
		t.Fatalf("IdP called %d times within Retry-After", i.n())
	}
	clk.Advance(2 * time.Second)
	_, _ = c.Fetch(bg, "r", cc)
	if i.n() != 2 {
		t.Fatalf("IdP calls after Retry-After = %d, want 2", i.n())
	}
}

// Backoff grows exponentially: counted at the IdP over simulated time on a cold key.
func TestBackoffExponential(t *testing.T) {
	i := newIDP(t)
	i.set(func(w http.ResponseWriter, r *http.Request, n int64) { http.Error(w, "x", 500) })
	clk := newClock()
	c := newTestCache(t, clk, func(o *Options) { o.BackoffMax = time.Hour })
	cc := baseCC(i)
	// Request every 100 ms for 64 s: retries at ~1, 2, 4, 8, 16, 32 s gaps (+≤20 %) → 6-7 calls.
	for range 640 {
		_, _ = c.Fetch(bg, "r", cc)
		clk.Advance(100 * time.Millisecond)
	}
	if n := i.n(); n < 5 || n > 7 {
		t.Fatalf("IdP calls = %d, want ~6", n)
	}
}

// Keys: any selecting field differs → a different key (and a different token); the order of
// scopes or parameter names does not matter.
func TestKeysDiffer(t *testing.T) {
	base := ClientCredentials{TokenURL: "https://idp/t", ClientID: "a", ClientSecret: "s", Scopes: []string{"x", "y"}, Audience: "aud",
		EndpointParams: map[string][]string{"resource": {"r1", "r2"}, "tenant": {"t"}}}
	k0 := CredentialsKey(ModeFetch, base)
	differ := map[string]func(*ClientCredentials){
		"token url":   func(c *ClientCredentials) { c.TokenURL = "https://idp/t2" },
		"client id":   func(c *ClientCredentials) { c.ClientID = "b" },
		"secret":      func(c *ClientCredentials) { c.ClientSecret = "s2" },
		"scopes":      func(c *ClientCredentials) { c.Scopes = []string{"x"} },
		"scope added": func(c *ClientCredentials) { c.Scopes = []string{"x", "y", "z"} },
		"audience":    func(c *ClientCredentials) { c.Audience = "aud2" },
		"param value": func(c *ClientCredentials) {
			c.EndpointParams = map[string][]string{"resource": {"r1"}, "tenant": {"t"}}
		},
		"param order": func(c *ClientCredentials) {
			c.EndpointParams = map[string][]string{"resource": {"r2", "r1"}, "tenant": {"t"}}
		},
		"param name": func(c *ClientCredentials) {
			c.EndpointParams = map[string][]string{"resource": {"r1", "r2"}, "tenant2": {"t"}}
		},
		"auth style":    func(c *ClientCredentials) { c.AuthStyle = AuthStyleBody },
		"field shift":   func(c *ClientCredentials) { c.ClientID, c.ClientSecret = "as", "" },
		"scope vs aud":  func(c *ClientCredentials) { c.Scopes, c.Audience = []string{"x", "y", "aud"}, "" },
		"params remove": func(c *ClientCredentials) { c.EndpointParams = nil },
	}
	for name, mod := range differ {
		cc := base
		mod(&cc)
		if CredentialsKey(ModeFetch, cc) == k0 {
			t.Errorf("%s: same key", name)
		}
	}
	if CredentialsKey(ModeExchange, base) == k0 {
		t.Error("mode: same key")
	}
	same := base
	same.Scopes = []string{"y", "x", "x"}
	same.EndpointParams = map[string][]string{"tenant": {"t"}, "resource": {"r1", "r2"}}
	same.AuthStyle = AuthStyleBasic
	if CredentialsKey(ModeFetch, same) != k0 {
		t.Error("scope order / duplicate or explicit default style changed the key")
	}
	if strings.Contains(string(k0), "s") && strings.Contains(string(k0), base.ClientSecret+base.Audience) {
		t.Error("key holds the secret")
	}

	// Live: two routes differing only in audience get different tokens from two IdP calls.
	i := newIDP(t)
	c := newTestCache(t, newClock(), nil)
	a, b := baseCC(i), baseCC(i)
	a.Audience, b.Audience = "one", "two"
	ta, err1 := c.Fetch(bg, "ra", a)
	tb, err2 := c.Fetch(bg, "rb", b)
	if err1 != nil || err2 != nil || ta == tb || i.n() != 2 {
		t.Fatalf("%v %v same=%v calls=%d", err1, err2, ta == tb, i.n())
	}
	// The same credentials on another route share the token.
	if tc, err := c.Fetch(bg, "rc", a); err != nil || tc != ta || i.n() != 2 {
		t.Fatalf("shared: %v", err)
	}
}

// assertBoundedAttempt checks that a failed call made at most one IdP attempt (before is
// the count of requests the IdP had seen before the call; a call may also join an attempt
// still in flight) and, when the IdP hangs, that the call's timeout ended it: the call is
// bounded by one attempt and the timeout, shown by counts and the error's reason rather than
// by timing it under -race.
func assertBoundedAttempt(t *testing.T, step string, i *idp, before int64, err error, hang bool) {
	t.Helper()
	if n := i.n() - before; n > 1 {
		t.Fatalf("%s: %d IdP attempts, want at most 1", step, n)
	}
	var ue *Error
	if hang && (!errors.As(err, &ue) || ue.Reason != ReasonTimeout) {
		t.Fatalf("%s: %v, want the timeout to end the hanging attempt", step, err)
	}
}
