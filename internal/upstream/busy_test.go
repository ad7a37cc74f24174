package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/testkit"
)

// holdingIDP is a token endpoint that counts the requests in flight (and the most seen at
// once) and answers none until released.
type holdingIDP struct {
	*idp
	inFlight, maxInFlight atomic.Int64
	release               chan struct{}
}

func newHoldingIDP(t *testing.T) *holdingIDP {
	h := &holdingIDP{idp: newIDP(t), release: make(chan struct{})}
	h.set(func(w http.ResponseWriter, r *http.Request, n int64) {
		cur := h.inFlight.Add(1)
		for {
			m := h.maxInFlight.Load()
			if cur <= m || h.maxInFlight.CompareAndSwap(m, cur) {
				break
			}
		}
		select {
		case <-h.release:
		case <-h.stop:
		}
		h.inFlight.Add(-1)
		id, _, _ := r.BasicAuth()
		writeJSON(w, 200, map[string]any{"access_token": fmt.Sprintf("%s-tok-%d", id, n), "token_type": "Bearer", "expires_in": 300})
	})
	return h
}

// queuedFlights counts the exchanges waiting for one of their route's slots.
func queuedFlights(c *Cache) int {
	n := 0
	c.queued.Range(func(any, any) bool { n++; return true })
	return n
}

// deadlineCtx is a context whose deadline the test fires by hand (Err: DeadlineExceeded), so
// that "the Check's deadline passed while queued" needs no wall-clock race.
type deadlineCtx struct {
	context.Context
	done chan struct{}
}

func (d deadlineCtx) Done() <-chan struct{} { return d.done }
func (d deadlineCtx) Err() error {
	select {
	case <-d.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// TestExchangeVerificationsBoundedPerRoute covers issue 9, finding 1 (docs/upstream.md#upstream-credentials-from-an-idp-fetch-and-exchange): at most
// 16 verifications per route are in flight at the IdP at once; a 17th waits within the route's
// timeout, then fails with ErrBusy (503, never ErrRejected). Proved by counting the requests
// in flight at a real IdP that holds every answer until released.
func TestExchangeVerificationsBoundedPerRoute(t *testing.T) {
	const callers = 40
	tests := []struct {
		name string
		run  func(t *testing.T, h *holdingIDP, c *Cache, m *metrics.Metrics)
	}{
		{"the 17th and later wait, then complete once released", func(t *testing.T, h *holdingIDP, c *Cache, _ *metrics.Metrics) {
			var wg sync.WaitGroup
			toks := make([]Token, callers)
			errs := make([]error, callers)
			for k := range callers {
				wg.Go(func() {
					cc := exCC(h.idp, fmt.Sprint("client-", k), "secret")
					cc.Timeout = time.Minute // a bound for a broken run only; nothing times out
					toks[k], errs[k] = c.Exchange(bg, "legacy", cc)
				})
			}
			testkit.WaitFor(t, "16 at the IdP and 24 queued", 10*time.Second, 2*time.Millisecond, func() bool {
				return h.inFlight.Load() == MaxVerificationsPerRoute && queuedFlights(c) == callers-MaxVerificationsPerRoute
			})
			// While the 16 are held, the queued ones cannot reach the IdP.
			if n := h.n(); n != MaxVerificationsPerRoute {
				t.Fatalf("IdP requests while 16 are held = %d", n)
			}
			// Another route has slots of its own.
			other := make(chan error, 1)
			go func() {
				cc := exCC(h.idp, "other-route-client", "secret")
				cc.Timeout = time.Minute
				_, err := c.Exchange(bg, "other", cc)
				other <- err
			}()
			testkit.WaitFor(t, "the other route's call at the IdP", 10*time.Second, 2*time.Millisecond, func() bool {
				return h.inFlight.Load() == MaxVerificationsPerRoute+1
			})
			close(h.release)
			wg.Wait()
			if err := <-other; err != nil {
				t.Fatalf("other route: %v", err)
			}
			seen := map[string]bool{}
			for k := range callers {
				if errs[k] != nil || toks[k].AccessToken == "" || seen[toks[k].AccessToken] {
					t.Fatalf("caller %d: %+v %v", k, toks[k], errs[k])
				}
				seen[toks[k].AccessToken] = true
			}
			if n := h.n(); n != callers+1 {
				t.Fatalf("IdP requests = %d, want %d", n, callers+1)
			}
			if max := h.maxInFlight.Load(); max != MaxVerificationsPerRoute+1 {
				t.Fatalf("most in flight at once = %d, want 16 for the route and 1 for the other", max)
			}
		}},
		{"a queued caller whose deadline passes gets ErrBusy", func(t *testing.T, h *holdingIDP, c *Cache, m *metrics.Metrics) {
			var wg sync.WaitGroup
			for k := range MaxVerificationsPerRoute {
				wg.Go(func() {
					cc := exCC(h.idp, fmt.Sprint("client-", k), "secret")
					cc.Timeout = time.Minute
					if _, err := c.Exchange(bg, "legacy", cc); err != nil {
						t.Errorf("held caller %d: %v", k, err)
					}
				})
			}
			testkit.WaitFor(t, "16 at the IdP", 10*time.Second, 2*time.Millisecond, func() bool {
				return h.inFlight.Load() == MaxVerificationsPerRoute
			})
			// The 17th: the Check's deadline passes while it is queued.
			ctx := deadlineCtx{Context: bg, done: make(chan struct{})}
			late := exCC(h.idp, "client-17", "secret")
			late.Timeout = time.Second // its flight gives up waiting after the route's timeout
			res := make(chan error, 1)
			go func() {
				_, err := c.Exchange(ctx, "legacy", late)
				res <- err
			}()
			testkit.WaitFor(t, "the 17th to queue", 10*time.Second, 2*time.Millisecond, func() bool { return queuedFlights(c) == 1 })
			close(ctx.done)
			err := <-res
			if !errors.Is(err, ErrBusy) || !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRejected) {
				t.Fatalf("17th: %v, want ErrBusy (and ErrUnavailable, not ErrRejected)", err)
			}
			// Its flight gives up within the route's timeout, without an IdP call: busy is
			// counted for the caller and for the flight.
			testkit.WaitFor(t, "the 17th's flight to give up", 10*time.Second, 2*time.Millisecond, func() bool {
				return testkit.CounterValue(t, m, "tokengate_upstream_token_requests_total", map[string]string{"route": "legacy", "mode": "exchange", "result": "busy"}) == 2
			})
			if q := queuedFlights(c); q != 0 {
				t.Fatalf("%d still queued", q)
			}
			close(h.release)
			wg.Wait()
			if n := h.n(); n != MaxVerificationsPerRoute {
				t.Fatalf("IdP requests = %d, want 16 (the busy one never reached it)", n)
			}
			// Busy is no failure of the credentials: no backoff, no negative entry.
			if _, err := c.Exchange(bg, "legacy", late); err != nil {
				t.Fatalf("17th again once slots are free: %v", err)
			}
			if h.maxInFlight.Load() != MaxVerificationsPerRoute {
				t.Fatalf("most in flight at once = %d", h.maxInFlight.Load())
			}
		}},
		{"identical credentials share one slot", func(t *testing.T, h *holdingIDP, c *Cache, _ *metrics.Metrics) {
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					cc := exCC(h.idp, "same-client", "secret")
					cc.Timeout = time.Minute
					if _, err := c.Exchange(bg, "legacy", cc); err != nil {
						t.Errorf("caller: %v", err)
					}
				})
			}
			testkit.WaitFor(t, "one call at the IdP", 10*time.Second, 2*time.Millisecond, func() bool { return h.inFlight.Load() == 1 })
			// 15 distinct credentials still fit next to it: nothing queues.
			for k := range MaxVerificationsPerRoute - 1 {
				wg.Go(func() {
					cc := exCC(h.idp, fmt.Sprint("client-", k), "secret")
					cc.Timeout = time.Minute
					if _, err := c.Exchange(bg, "legacy", cc); err != nil {
						t.Errorf("caller %d: %v", k, err)
					}
				})
			}
			testkit.WaitFor(t, "16 at the IdP", 10*time.Second, 2*time.Millisecond, func() bool {
				return h.inFlight.Load() == MaxVerificationsPerRoute
			})
			if q := queuedFlights(c); q != 0 {
				t.Fatalf("%d queued", q)
			}
			close(h.release)
			wg.Wait()
			if n := h.n(); n != MaxVerificationsPerRoute {
				t.Fatalf("IdP requests = %d, want 16", n)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHoldingIDP(t)
			m := metrics.New()
			c := newTestCache(t, newClock(), func(o *Options) { o.Metrics = m })
			tt.run(t, h, c, m)
		})
	}
}
