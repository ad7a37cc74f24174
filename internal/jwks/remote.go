package jwks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokengate/tokengate/internal/defaults"
	"github.com/tokengate/tokengate/internal/httpx"
	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/metrics"
)

// Defaults of Options (docs/upstream.md#caches); RefreshInterval defaults to
// defaults.RefreshInterval.
const (
	DefaultMinRefreshInterval = 30 * time.Second
	DefaultUnknownKidInterval = 10 * time.Second
	DefaultInitialBackoff     = time.Second
	DefaultFetchTimeout       = 10 * time.Second
	DefaultMaxBodyBytes       = defaultMaxBody
)

// Options configure a Remote source. Zero values take the defaults above.
type Options struct {
	Name      string // provider name, for logs and metrics
	Issuer    string // the provider's issuer; discovery reads Issuer + /.well-known/openid-configuration
	JWKSURI   string // the JWK Set URL; exactly one of JWKSURI and Discovery
	Discovery bool

	// RefreshInterval is the background refresh period and the upper bound of a honoured
	// Cache-Control max-age; MinRefreshInterval its lower bound.
	RefreshInterval, MinRefreshInterval time.Duration
	// UnknownKidInterval: an unknown kid refreshes only if no fetch finished within it.
	UnknownKidInterval time.Duration
	// InitialBackoff is the first retry delay after a failure; it doubles, with jitter, up to
	// RefreshInterval.
	InitialBackoff time.Duration
	FetchTimeout   time.Duration // bound on one fetch, discovery included
	MaxBodyBytes   int64         // larger documents are refused unread

	HTTPClient *http.Client // nil: a default client; copied, never modified
	AllowHTTP  bool         // allow http:// for non-loopback hosts
	Logger     *slog.Logger
	Metrics    *metrics.Metrics
	Now        func() time.Time // clock of the unknown-kid rate limit; nil: time.Now

	// after replaces time.After in the refresh loop (tests observe the schedule with it).
	after func(time.Duration) <-chan time.Time
}

// Remote is a JWK Set fetched over HTTPS and refreshed in the background. The last good set
// is kept across failures; a document with no usable key never replaces it.
type Remote struct {
	opts    Options
	client  *http.Client
	log     *slog.Logger
	keys    atomic.Pointer[jose.KeySet]
	ready   chan struct{}
	readyMu sync.Once

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	inflight *call
	lastDone time.Time // when the last fetch finished (by opts.Now), success or not
	hasDone  bool

	// Touched only by the fetch in flight; fetches never overlap (mu/inflight order them).
	jwksURI     string // discovered jwks_uri, forgotten on failure
	lastDropped string
}

// call is one fetch that any number of callers may wait for.
type call struct {
	done chan struct{}
	err  error
	next time.Duration // refresh delay after a success
}

// NewRemote checks the options and starts the first fetch and the refresh loop in the
// background: it never blocks on the network. ctx provides values only; the source runs until
// Close (so that it can outlive the configuration generation that created it).
func NewRemote(ctx context.Context, opts Options) (*Remote, error) {
	if opts.Name == "" {
		return nil, errors.New("jwks: provider name is required")
	}
	if opts.Discovery == (opts.JWKSURI != "") {
		return nil, fmt.Errorf("jwks: provider %s: exactly one of jwks_uri and discovery is required", opts.Name)
	}
	if opts.Discovery {
		if _, err := httpx.CheckURL(opts.Issuer, opts.AllowHTTP); err != nil {
			return nil, fmt.Errorf("jwks: provider %s: issuer: %w", opts.Name, err)
		}
	} else if _, err := httpx.CheckURL(opts.JWKSURI, opts.AllowHTTP); err != nil {
		return nil, fmt.Errorf("jwks: provider %s: jwks_uri: %w", opts.Name, err)
	}
	for _, d := range []time.Duration{opts.RefreshInterval, opts.MinRefreshInterval, opts.UnknownKidInterval,
		opts.InitialBackoff, opts.FetchTimeout} {
		if d < 0 {
			return nil, fmt.Errorf("jwks: provider %s: negative duration", opts.Name)
		}
	}
	if opts.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("jwks: provider %s: negative body limit", opts.Name)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&opts.RefreshInterval, defaults.RefreshInterval)
	def(&opts.MinRefreshInterval, DefaultMinRefreshInterval)
	def(&opts.UnknownKidInterval, DefaultUnknownKidInterval)
	def(&opts.InitialBackoff, DefaultInitialBackoff)
	def(&opts.FetchTimeout, DefaultFetchTimeout)
	if opts.MinRefreshInterval > opts.RefreshInterval {
		opts.MinRefreshInterval = opts.RefreshInterval
	}
	if opts.InitialBackoff > opts.RefreshInterval {
		opts.InitialBackoff = opts.RefreshInterval
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.after == nil {
		opts.after = time.After
	}
	client, err := newClient(opts.HTTPClient)
	if err != nil {
		return nil, fmt.Errorf("jwks: provider %s: %w", opts.Name, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Remote{
		opts:   opts,
		client: client,
		log:    log.With("provider", opts.Name),
		ready:  make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.wg.Add(1)
	go r.run()
	return r, nil
}

// Keys returns the current set, nil until one has loaded.
func (r *Remote) Keys() *jose.KeySet { return r.keys.Load() }

// Ready is closed once a usable set has loaded.
func (r *Remote) Ready() <-chan struct{} { return r.ready }

// Lookup returns the current set if it holds kid. Otherwise it joins the fetch in flight, or starts
// one (OpenID Connect Core 1.0 §10.1.1: refetch on an unknown kid) unless a fetch (successful or
// not, the start-up fetch included) finished less than UnknownKidInterval ago, so that tokens with
// random kids cannot drive traffic to the IdP (docs/upstream.md#caches). It waits for that fetch
// until ctx is done, then returns whatever set is current (possibly without kid, or nil if none
// ever loaded).
func (r *Remote) Lookup(ctx context.Context, kid string) *jose.KeySet {
	if ks := r.keys.Load(); ks != nil && (kid == "" || ks.Has(kid)) {
		return ks
	}
	if c := r.refresh(true); c != nil {
		select {
		case <-c.done:
		case <-ctx.Done():
		case <-r.ctx.Done():
		}
	}
	return r.keys.Load()
}

// Close stops the refresh loop and any fetch in flight, and waits for them.
func (r *Remote) Close() {
	r.mu.Lock()
	r.cancel()
	r.mu.Unlock()
	r.wg.Wait()
}

// refresh returns the fetch in flight, or starts one. With limited, it starts none when a
// fetch finished less than UnknownKidInterval ago, and returns nil. nil also after Close.
func (r *Remote) refresh(limited bool) *call {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return nil
	}
	if r.inflight != nil {
		return r.inflight
	}
	if limited && r.hasDone && r.opts.Now().Sub(r.lastDone) < r.opts.UnknownKidInterval {
		return nil
	}
	c := &call{done: make(chan struct{})}
	r.inflight = c
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ks, next, err := r.fetch()
		r.mu.Lock()
		if err == nil {
			r.keys.Store(ks)
		}
		r.inflight = nil
		r.lastDone = r.opts.Now()
		r.hasDone = true
		r.mu.Unlock()
		if err == nil {
			// Ready once the fetch is complete: a caller woken by it sees a settled state.
			r.readyMu.Do(func() { close(r.ready) })
		}
		c.next, c.err = next, err
		close(c.done)
	}()
	return c
}

// run fetches at start, then on schedule: after a success when max-age (clamped) or the
// refresh interval says, after a failure with exponential backoff and jitter.
func (r *Remote) run() {
	defer r.wg.Done()
	failures := 0
	for {
		c := r.refresh(false)
		if c == nil {
			return
		}
		select {
		case <-c.done:
		case <-r.ctx.Done():
			return
		}
		var d time.Duration
		if c.err == nil {
			failures = 0
			d = c.next
		} else {
			failures++
			d = r.backoff(failures)
		}
		select {
		case <-r.opts.after(d):
		case <-r.ctx.Done():
			return
		}
	}
}

// backoff is the delay before retry number n (n >= 1): InitialBackoff·2^(n-1), capped at the
// refresh interval, drawn uniformly from its upper half so that replicas do not retry in step.
func (r *Remote) backoff(n int) time.Duration {
	d := r.opts.InitialBackoff
	for i := 1; i < n && d < r.opts.RefreshInterval; i++ {
		d *= 2
	}
	d = min(d, r.opts.RefreshInterval)
	half := d / 2
	return half + rand.N(d-half+1)
}

// nextRefresh is the delay after a successful fetch: the max-age of the response clamped to
// [MinRefreshInterval, RefreshInterval], or RefreshInterval without one.
func (r *Remote) nextRefresh(maxAge *time.Duration) time.Duration {
	if maxAge == nil {
		return r.opts.RefreshInterval
	}
	return min(max(*maxAge, r.opts.MinRefreshInterval), r.opts.RefreshInterval)
}

// fetch performs one fetch (discovery first when configured and not yet done) and records its
// outcome in metrics and logs. The caller installs the set.
func (r *Remote) fetch() (*jose.KeySet, time.Duration, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.opts.FetchTimeout)
	defer cancel()
	ks, dropped, age, err := r.fetchKeys(ctx)
	if r.ctx.Err() != nil {
		return nil, 0, context.Canceled // closing: not a failure of the IdP
	}
	if d := strings.Join(dropped, "; "); d != r.lastDropped {
		r.lastDropped = d
		if d != "" {
			r.log.Warn("jwks keys dropped", "count", len(dropped), "reasons", slices.Compact(slices.Sorted(slices.Values(dropped))))
		}
	}
	if err != nil {
		r.jwksURI = "" // rediscover next time, in case the IdP moved its keys
		r.opts.Metrics.JWKSRefresh(r.opts.Name, "error")
		r.log.Warn("jwks refresh failed", "reason", err.Error(), "keys_loaded", r.keys.Load() != nil)
		return nil, 0, err
	}
	r.opts.Metrics.JWKSRefresh(r.opts.Name, "success")
	next := r.nextRefresh(age)
	r.log.Debug("jwks refreshed", "keys", ks.Len(), "next_refresh", next)
	return ks, next, nil
}

// fetchKeys downloads and parses the set. Errors carry fixed texts only.
func (r *Remote) fetchKeys(ctx context.Context) (*jose.KeySet, []string, *time.Duration, error) {
	u := r.opts.JWKSURI
	if r.opts.Discovery {
		if r.jwksURI == "" {
			found, err := discover(ctx, r.client, r.opts.Issuer, r.opts.AllowHTTP, r.opts.MaxBodyBytes)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("discovery: %w", err)
			}
			r.jwksURI = found
		}
		u = r.jwksURI
	}
	body, age, err := get(ctx, r.client, u, "application/jwk-set+json, application/json", r.opts.MaxBodyBytes)
	if err != nil {
		return nil, nil, nil, err
	}
	ks, dropped, err := jose.ParseKeySet(body)
	if err != nil {
		if errors.Is(err, jose.ErrNoUsableKeys) {
			return nil, dropped, nil, fmt.Errorf("%w: %w", ErrInvalidJWKS, jose.ErrNoUsableKeys)
		}
		return nil, dropped, nil, ErrInvalidJWKS
	}
	return ks, dropped, age, nil
}
