package upstream

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"

	"github.com/tokengate/tokengate/internal/defaults"
	"github.com/tokengate/tokengate/internal/metrics"
)

// cacheName is the `cache` label of the hit/miss metrics.
const cacheName = "upstream_tokens"

// Refresh-ahead policy (docs/upstream.md#upstream-credentials-from-an-idp-fetch-and-exchange).
const (
	refreshFraction = 0.80 // refresh in the background once this much of the lifetime passed
	refreshJitter   = 0.03 // ± this fraction of the lifetime, so replicas do not refresh together
	staleFraction   = 0.10 // never serve in the last 10 % of the lifetime ...
	staleMax        = 10 * time.Second
	// ... at most the last 10 s, while a refresh can succeed.
	defaultStorePoll = 25 * time.Millisecond
)

// Options configure a Cache. Zero values take the documented defaults.
type Options struct {
	Size       int          // entries (tokens) held; default 100000 (cache.upstream_tokens)
	HTTPClient *http.Client // transport for token requests; its redirect policy is replaced (never follow)
	Logger     *slog.Logger
	Metrics    *metrics.Metrics
	Now        func() time.Time
	// Store is an optional shared second level (Redis) for fetch and exchange tokens; nil keeps
	// the cache in-process only. It is consulted only on a local miss or refresh.
	Store Store

	AllowHTTP         bool          // http:// token URLs for non-loopback hosts in Fetch and Exchange (sources take AllowHTTP)
	NegativeTTL       time.Duration // how long rejected exchange credentials are remembered; default 30 s
	BackoffBase       time.Duration // first retry delay after a failure; default 1 s
	BackoffMax        time.Duration // retry delay cap; default 1 min
	MaxResponseBytes  int64         // token response size cap; default 256 KiB
	StorePollInterval time.Duration // how often a replica waiting for another's fetch looks; default 25 ms
}

// Cache holds upstream tokens for every mode. It is safe for concurrent use.
type Cache struct {
	now       func() time.Time
	log       *slog.Logger
	m         *metrics.Metrics
	client    *http.Client
	store     Store
	allowHTTP bool
	negTTL    time.Duration
	boBase    time.Duration
	boMax     time.Duration
	poll      time.Duration

	tokens *lru.Cache[Key, *entry]  // keys that hold (or held) a token
	fails  *lru.Cache[Key, failure] // keys without a token that failed recently: backoff and negative cache
	group  singleflight.Group

	// Exchange's bound on IdP calls in flight: one semaphore of MaxVerificationsPerRoute per
	// route name (route names come from the configuration, so this stays small), and the keys
	// whose flight is waiting for a slot, so that a caller who gives up meanwhile is told
	// ErrBusy rather than a plain timeout.
	verifyLimit int64
	sems        sync.Map // route name → *semaphore.Weighted
	queued      sync.Map // Key → struct{}

	base   context.Context // parent of every IdP call: detached from callers, canceled by Close
	cancel context.CancelFunc
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// entry is one key's token and failure state. Readers only load atomics.
type entry struct {
	st         atomic.Pointer[state]
	fail       atomic.Pointer[failure]
	refreshing atomic.Bool
}

// state is an immutable cached token with its precomputed refresh points.
type state struct {
	tok       Token
	refreshAt time.Time // background refresh from here (≈80 % of the lifetime, jittered)
	staleAt   time.Time // not served from here while a refresh can succeed (last 10 %, ≤ 10 s)
}

// failure is the backoff state of a key after a failed acquisition.
type failure struct {
	n     int       // consecutive failures
	until time.Time // no new attempt before this
	err   *Error    // the last error, returned while in backoff
}

// request is one acquisition to run: what to call and how to account for it.
type request struct {
	route, mode string
	key         Key
	timeout     time.Duration
	shared      bool // may use the Store
	acquire     func(context.Context) (Token, error)
}

// NewCache builds a Cache. Call Close to stop its background refreshes.
func NewCache(opts Options) *Cache {
	size := opts.Size
	if size <= 0 {
		size = defaults.CacheEntries
	}
	c := &Cache{
		now:       opts.Now,
		log:       opts.Logger,
		m:         opts.Metrics,
		store:     opts.Store,
		allowHTTP: opts.AllowHTTP,
		negTTL:    opts.NegativeTTL,
		boBase:    opts.BackoffBase,
		boMax:     opts.BackoffMax,
		poll:      opts.StorePollInterval,

		verifyLimit: MaxVerificationsPerRoute,
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.negTTL <= 0 {
		c.negTTL = DefaultNegativeTTL
	}
	if c.boBase <= 0 {
		c.boBase = DefaultBackoffBase
	}
	if c.boMax <= 0 {
		c.boMax = DefaultBackoffMax
	}
	if c.boMax < c.boBase {
		c.boMax = c.boBase
	}
	if c.poll <= 0 {
		c.poll = defaultStorePoll
	}
	maxBytes := opts.MaxResponseBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxResponseBytes
	}
	c.client = newHTTPClient(opts.HTTPClient, maxBytes)
	c.tokens, _ = lru.New[Key, *entry](size) // size > 0: cannot fail
	c.fails, _ = lru.New[Key, failure](size)
	c.base, c.cancel = context.WithCancel(context.Background())
	return c
}

// Close cancels in-flight token requests and waits for them to return. Later calls fail with
// ErrUnavailable. It does not close the Store.
func (c *Cache) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}

// Fetch returns the token for tokengate's own credentials cc (gateway level, mode "fetch").
// Errors match ErrUnavailable (503); a refusal of the credentials also matches ErrRejected.
func (c *Cache) Fetch(ctx context.Context, route string, cc ClientCredentials) (Token, error) {
	if err := cc.Validate(c.allowHTTP); err != nil {
		return Token{}, &Error{Mode: ModeFetch, Reason: ReasonInvalidConfig}
	}
	return c.byCredentials(ctx, route, ModeFetch, cc, CredentialsKey(ModeFetch, cc))
}

// byCredentials is Fetch once key is known: the cached token, or one requested at
// the IdP with cc, which may be shared through the Store.
func (c *Cache) byCredentials(ctx context.Context, route, mode string, cc ClientCredentials, key Key) (Token, error) {
	if tok, ok := c.fresh(key); ok {
		return tok, nil
	}
	return c.get(ctx, &request{
		route:   route,
		mode:    mode,
		key:     key,
		timeout: cc.timeout(),
		shared:  true,
		acquire: func(ctx context.Context) (Token, error) { return c.requestToken(ctx, mode, cc) },
	})
}

// Exchange returns a token obtained with the caller's credentials in cc (application level, mode
// "exchange"). The cache key is a hash of the credentials, never the secret itself. When the IdP
// refuses them the error matches ErrRejected (401 invalid_client,
// docs/decisions.md#the-decision-table) and the refusal is remembered for Options.NegativeTTL, so
// repeats do not reach the IdP; other failures match ErrUnavailable (503).
//
// At most MaxVerificationsPerRoute exchanges of one route are in flight at the IdP at once
// (identical credentials share one). Another waits for a slot within the route's timeout; a
// caller whose wait ends first gets an error matching ErrBusy (and ErrUnavailable: 503).
func (c *Cache) Exchange(ctx context.Context, route string, cc ClientCredentials) (Token, error) {
	if err := cc.validate(c.allowHTTP, false); err != nil {
		return Token{}, &Error{Mode: ModeExchange, Reason: ReasonInvalidConfig}
	}
	return c.exchange(ctx, route, cc)
}

// exchange is Exchange for settings already checked (an ExchangeSource checks them once).
func (c *Cache) exchange(ctx context.Context, route string, cc ClientCredentials) (Token, error) {
	if cc.ClientID == "" || cc.ClientSecret == "" {
		c.m.UpstreamToken(route, ModeExchange, "rejected")
		return Token{}, &Error{Mode: ModeExchange, Reason: ReasonMissingCredentials, rejected: true}
	}
	key := CredentialsKey(ModeExchange, cc)
	if tok, ok := c.fresh(key); ok {
		return tok, nil
	}
	return c.get(ctx, &request{
		route:   route,
		mode:    ModeExchange,
		key:     key,
		timeout: cc.timeout(),
		shared:  true,
		acquire: func(ctx context.Context) (Token, error) {
			release, err := c.verificationSlot(ctx, route, key)
			if err != nil {
				return Token{}, err
			}
			defer release()
			return c.requestToken(ctx, ModeExchange, cc)
		},
	})
}

// verificationSlot takes one of route's MaxVerificationsPerRoute slots, waiting within ctx (the
// flight's share of the route's timeout). The wait runs inside the flight, not in the callers,
// so that callers with identical credentials share one slot as they share one IdP call.
func (c *Cache) verificationSlot(ctx context.Context, route string, key Key) (release func(), err error) {
	v, ok := c.sems.Load(route)
	if !ok {
		v, _ = c.sems.LoadOrStore(route, semaphore.NewWeighted(c.verifyLimit))
	}
	sem := v.(*semaphore.Weighted)
	if !sem.TryAcquire(1) {
		c.queued.Store(key, struct{}{})
		err := sem.Acquire(ctx, 1)
		c.queued.Delete(key)
		if err != nil {
			if c.base.Err() != nil {
				return nil, &Error{Mode: ModeExchange, Reason: ReasonClosed}
			}
			return nil, &Error{Mode: ModeExchange, Reason: ReasonBusy}
		}
	}
	return func() { sem.Release(1) }, nil
}

// isQueued reports whether key's flight is waiting for a verification slot.
func (c *Cache) isQueued(key Key) bool {
	_, ok := c.queued.Load(key)
	return ok
}

// mint returns the token cached under key (MintSource.key), calling sign (tokengate's own
// issuer, no HTTP) when there is none or it is due for refresh. sign runs detached from ctx,
// within defaults.UpstreamTimeout: the mint configuration has no timeout of its own, as signing is
// in-process. Minted tokens are never shared through the Store.
func (c *Cache) mint(ctx context.Context, route string, key Key, sign func(context.Context) (Token, error)) (Token, error) {
	return c.get(ctx, &request{
		route:   route,
		mode:    ModeMint,
		key:     key,
		timeout: defaults.UpstreamTimeout,
		acquire: func(ctx context.Context) (Token, error) {
			t, err := sign(ctx)
			if err != nil {
				return Token{}, &Error{Mode: ModeMint, Reason: ReasonMintFailed, cause: err}
			}
			if t.AccessToken == "" {
				return Token{}, &Error{Mode: ModeMint, Reason: ReasonMintFailed}
			}
			if t.IssuedAt.IsZero() || t.IssuedAt.After(t.Expiry) {
				t.IssuedAt = c.now()
			}
			return t, nil
		},
	})
}

// fresh is the hot path: a cached token before its refresh point, with no allocation.
func (c *Cache) fresh(key Key) (Token, bool) {
	e, ok := c.tokens.Get(key)
	if !ok {
		return Token{}, false
	}
	st := e.st.Load()
	if st == nil || !c.now().Before(st.refreshAt) {
		return Token{}, false
	}
	c.m.CacheHit(cacheName)
	return st.tok, true
}

// valid returns the token cached under key while it has not expired, even past its refresh
// point, without starting a refresh.
func (c *Cache) valid(key Key) (Token, bool) {
	e, ok := c.tokens.Get(key)
	if !ok {
		return Token{}, false
	}
	st := e.st.Load()
	if st == nil || !c.now().Before(st.tok.Expiry) {
		return Token{}, false
	}
	c.m.CacheHit(cacheName)
	return st.tok, true
}

// get is the read path shared by every mode.
func (c *Cache) get(ctx context.Context, r *request) (Token, error) {
	now := c.now()
	e, _ := c.tokens.Get(r.key)
	var st *state
	if e != nil {
		st = e.st.Load()
	}
	if st != nil && now.Before(st.tok.Expiry) {
		if now.Before(st.refreshAt) {
			c.m.CacheHit(cacheName)
			return st.tok, nil
		}
		if now.Before(st.staleAt) {
			// Refresh in the background; this caller does not wait for the IdP.
			c.m.CacheHit(cacheName)
			c.refreshAhead(e, r, now)
			return st.tok, nil
		}
		// The last 10 % of the lifetime: refresh now unless a failure says it cannot succeed
		// yet, and fall back to the still valid token if the refresh fails or is slow.
		if f := e.fail.Load(); f != nil && now.Before(f.until) {
			c.m.CacheHit(cacheName)
			return st.tok, nil
		}
		c.m.CacheMiss(cacheName)
		tok, err := c.wait(ctx, r)
		if err == nil {
			return tok, nil
		}
		if c.now().Before(st.tok.Expiry) {
			return st.tok, nil
		}
		return Token{}, err
	}
	c.m.CacheMiss(cacheName)
	if f := c.failureOf(r.key, e); f != nil && now.Before(f.until) {
		if f.err.rejected && r.mode == ModeExchange {
			c.m.UpstreamToken(r.route, r.mode, "negative_cache")
			return Token{}, f.err
		}
		c.m.UpstreamToken(r.route, r.mode, "backoff")
		return Token{}, &Error{Mode: r.mode, Reason: ReasonBackoff, Status: f.err.Status, Code: f.err.Code, rejected: f.err.rejected, refused: f.err.refused}
	}
	return c.wait(ctx, r)
}

// wait joins (or starts) the one acquisition of r.key and waits for it at most r.timeout.
// The acquisition itself runs detached: a caller that gives up does not fail the others.
func (c *Cache) wait(ctx context.Context, r *request) (Token, error) {
	ch := c.group.DoChan(string(r.key), c.flight(r))
	t := time.NewTimer(r.timeout)
	defer t.Stop()
	select {
	case res := <-ch:
		if res.Err != nil {
			return Token{}, res.Err
		}
		return res.Val.(Token), nil
	case <-t.C:
		if c.isQueued(r.key) {
			c.m.UpstreamToken(r.route, r.mode, "busy")
			return Token{}, &Error{Mode: r.mode, Reason: ReasonBusy}
		}
		c.m.UpstreamToken(r.route, r.mode, "timeout")
		return Token{}, &Error{Mode: r.mode, Reason: ReasonTimeout}
	case <-ctx.Done():
		reason := ReasonCanceled
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			reason = ReasonTimeout
			if c.isQueued(r.key) {
				// The Check's deadline passed while the route's slots were all taken.
				c.m.UpstreamToken(r.route, r.mode, "busy")
				reason = ReasonBusy
			}
		}
		return Token{}, &Error{Mode: r.mode, Reason: reason}
	}
}

// refreshAhead starts a background refresh of e unless one is running or a failure asks to wait.
func (c *Cache) refreshAhead(e *entry, r *request, now time.Time) {
	if f := e.fail.Load(); f != nil && now.Before(f.until) {
		return
	}
	if !e.refreshing.CompareAndSwap(false, true) {
		return
	}
	ch := c.group.DoChan(string(r.key), c.flight(r))
	go func() {
		<-ch
		e.refreshing.Store(false)
	}()
}

// flight is the one acquisition for a key; singleflight runs it in its own goroutine.
func (c *Cache) flight(r *request) func() (any, error) {
	return func() (v any, err error) {
		if !c.enter() {
			return nil, &Error{Mode: r.mode, Reason: ReasonClosed}
		}
		defer c.wg.Done()
		defer func() {
			// A mint function that panics must not take the process down.
			if p := recover(); p != nil {
				c.log.Error("upstream token acquisition panicked", "route", r.route, "mode", r.mode)
				reason := ReasonInvalidResponse
				if r.mode == ModeMint {
					reason = ReasonMintFailed
				}
				v, err = nil, &Error{Mode: r.mode, Reason: reason}
			}
		}()
		now := c.now()
		e, _ := c.tokens.Peek(r.key)
		var cur Token
		if e != nil {
			if st := e.st.Load(); st != nil {
				if now.Before(st.refreshAt) {
					return st.tok, nil // another flight just finished: no second IdP call
				}
				cur = st.tok
			}
		}
		if f := c.failureOf(r.key, e); f != nil && now.Before(f.until) {
			return nil, &Error{Mode: r.mode, Reason: ReasonBackoff, Status: f.err.Status, Code: f.err.Code, rejected: f.err.rejected, refused: f.err.refused}
		}
		tok, source, err := c.obtain(r, cur)
		now = c.now()
		if err == nil && !now.Before(tok.Expiry) {
			err = &Error{Mode: r.mode, Reason: ReasonBadExpiresIn}
		}
		if err != nil {
			return nil, c.recordFailure(r, err, now)
		}
		c.storeToken(r.key, tok)
		c.m.UpstreamToken(r.route, r.mode, source)
		return tok, nil
	}
}

func (c *Cache) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	return true
}

// Sources of a token, the `result` of a successful acquisition in the metrics.
const (
	sourceIdP    = "success"
	sourceShared = "shared"
)

// obtain acquires a token: directly, or through the Store so that one replica of a fleet calls
// the IdP while the others wait for its result (cur is the token this replica holds, if any).
// The IdP call itself always has the whole r.timeout. It runs detached from the callers (under
// c.base), each of whom waits at most r.timeout in wait.
func (c *Cache) obtain(r *request, cur Token) (Token, string, error) {
	fetch := func() (Token, error) {
		ctx, cancel := context.WithTimeout(c.base, r.timeout)
		defer cancel()
		return r.acquire(ctx)
	}
	if c.store == nil || !r.shared {
		t, err := fetch()
		return t, sourceIdP, err
	}
	usable := func(t Token) bool {
		return t.AccessToken != "" && t.Expiry.After(cur.Expiry) && c.now().Before(staleAt(t))
	}
	local := func() (Token, string, error) {
		t, err := fetch()
		if err == nil {
			c.share(r.key, t)
		}
		return t, sourceIdP, err
	}
	// Store calls are bounded by the store's own timeout; c.base stops them on Close.
	ctx := c.base
	var timer *time.Timer
	var waitUntil time.Time // wall clock: the end of this replica's wait for another's fetch
	for {
		t, ok, err := c.store.Load(ctx, r.key)
		if err != nil {
			return local() // the store is down or slow: fetch locally
		}
		if ok && usable(t) {
			if !waitUntil.IsZero() {
				c.m.RedisOp("lock_wait", "shared")
			}
			return t, sourceShared, nil
		}
		unlock, held, err := c.store.TryLock(ctx, r.key)
		if err != nil {
			return local()
		}
		if held {
			// Another replica may have stored and released between our Load and TryLock.
			if t, ok, err := c.store.Load(ctx, r.key); err == nil && ok && usable(t) {
				unlock()
				return t, sourceShared, nil
			}
			t, err := fetch()
			if err == nil {
				c.share(r.key, t) // before unlocking, so waiters find it
			}
			unlock()
			return t, sourceIdP, err
		}
		// Another replica is fetching: look again shortly. If it dies, its lock lapses and the next
		// TryLock makes us the fetcher. A lock never blocks longer than that
		// (docs/upstream.md#scale-out-replicas-share-tokens-through-redis): a holder's own IdP call is
		// bounded by the route's timeout, so a lock still held a whole timeout after we first found it is
		// abandoned (planted with a long expiry, or a holder stuck renewing) and we fetch ourselves
		// rather than fail. The callers of this flight may have given up by then (their wait is bounded
		// by the same timeout), but the token it fetches serves the next ones: the route recovers instead
		// of staying 503.
		now := time.Now()
		if waitUntil.IsZero() {
			waitUntil = now.Add(r.timeout)
		} else if !now.Before(waitUntil) {
			c.m.RedisOp("lock_wait", "abandoned")
			c.log.Warn("shared fetch lock held past the route's timeout: fetching locally", "route", r.route, "mode", r.mode, "key", r.key.String())
			return local()
		}
		d := min(c.poll+rand.N(c.poll/2+1), waitUntil.Sub(now))
		if timer == nil {
			timer = time.NewTimer(d)
			defer timer.Stop()
		} else {
			timer.Reset(d)
		}
		select {
		case <-ctx.Done():
			return Token{}, "", &Error{Mode: r.mode, Reason: ReasonClosed}
		case <-timer.C:
		}
	}
}

// share writes t to the store; a failure only costs the other replicas their own fetch.
func (c *Cache) share(key Key, t Token) {
	_ = c.store.Save(context.WithoutCancel(c.base), key, t)
}

// storeToken caches t under key and clears the key's failure state.
func (c *Cache) storeToken(key Key, t Token) {
	e, ok := c.tokens.Peek(key)
	if !ok {
		ne := &entry{}
		prev, found, _ := c.tokens.PeekOrAdd(key, ne)
		if found {
			e = prev
		} else {
			e = ne
		}
	}
	e.st.Store(newState(t))
	e.fail.Store(nil)
	c.fails.Remove(key)
}

// newState computes the refresh points of t
// (docs/upstream.md#upstream-credentials-from-an-idp-fetch-and-exchange).
func newState(t Token) *state {
	issued := t.IssuedAt
	if issued.IsZero() || issued.After(t.Expiry) {
		issued = t.Expiry
	}
	life := t.Expiry.Sub(issued)
	frac := refreshFraction + refreshJitter*(2*rand.Float64()-1)
	return &state{
		tok:       t,
		refreshAt: issued.Add(time.Duration(float64(life) * frac)),
		staleAt:   staleAt(t),
	}
}

// staleAt is the start of the last 10 % (at most 10 s) of t's lifetime.
func staleAt(t Token) time.Time {
	life := t.Expiry.Sub(t.IssuedAt)
	if t.IssuedAt.IsZero() || life < 0 {
		life = 0
	}
	margin := min(time.Duration(float64(life)*staleFraction), staleMax)
	return t.Expiry.Add(-margin)
}

func (c *Cache) failureOf(key Key, e *entry) *failure {
	if e != nil {
		return e.fail.Load()
	}
	if f, ok := c.fails.Get(key); ok {
		return &f
	}
	return nil
}

// recordFailure sets the key's backoff after a failed acquisition, logs it and counts it.
func (c *Cache) recordFailure(r *request, err error, now time.Time) *Error {
	var ue *Error
	if !errors.As(err, &ue) {
		ue = &Error{Mode: r.mode, Reason: ReasonInvalidResponse}
	}
	switch ue.Reason {
	case ReasonSharedWait, ReasonClosed, ReasonCanceled:
		// Nothing failed at the IdP: no backoff.
		c.m.UpstreamToken(r.route, r.mode, "timeout")
		return ue
	case ReasonBusy:
		// The IdP was not called: no backoff, and no negative entry for these credentials.
		c.m.UpstreamToken(r.route, r.mode, "busy")
		return ue
	}
	e, _ := c.tokens.Peek(r.key)
	n := 1
	if prev := c.failureOf(r.key, e); prev != nil {
		n = prev.n + 1
	}
	delay := c.backoff(n)
	if ue.RetryAfter > delay {
		delay = ue.RetryAfter
	}
	result := "error"
	level := slog.LevelWarn
	if ue.refused {
		// The same subject token would be refused again: answered without the IdP meanwhile.
		result = "refused"
		delay = max(delay, c.negTTL)
		level = slog.LevelInfo
	} else if ue.rejected {
		result = "rejected"
		if r.mode == ModeExchange {
			// Negative cache: a bad caller's repeats are answered without the IdP.
			delay = max(delay, c.negTTL)
			level = slog.LevelInfo
		}
	} else if ue.Reason == ReasonTimeout {
		result = "timeout"
	}
	f := &failure{n: n, until: now.Add(delay), err: ue}
	if e != nil {
		e.fail.Store(f)
	} else {
		c.fails.Add(r.key, *f)
	}
	c.m.UpstreamToken(r.route, r.mode, result)
	attrs := []any{"route", r.route, "mode", r.mode, "key", r.key.String(), "reason", ue.Reason, "retry_in", delay.Round(time.Millisecond).String()}
	if ue.Status != 0 {
		attrs = append(attrs, "status", ue.Status)
	}
	if ue.Code != "" {
		attrs = append(attrs, "idp_error", ue.Code)
	}
	c.log.Log(context.Background(), level, "upstream token request failed", attrs...)
	return ue
}

// backoff is the delay before attempt n+1: exponential from BackoffBase, capped at BackoffMax,
// plus up to 20 % random jitter so replicas do not retry in step.
func (c *Cache) backoff(n int) time.Duration {
	d := c.boBase
	for i := 1; i < n && d < c.boMax; i++ {
		d *= 2
	}
	d = min(d, c.boMax)
	return min(d+time.Duration(rand.Int64N(int64(d)/5+1)), c.boMax+c.boMax/5)
}
