// Package introspect validates opaque access tokens at their authorization server by OAuth 2.0
// Token Introspection (RFC 7662), with a cache of the answers keyed by the token's SHA-256.
//
// An answer is trusted only when it is a 200 JSON object whose `active` member is a boolean
// (RFC 7662 §2.2: `active` is REQUIRED); anything else is a failure of the authorization
// server, never a decision about the token, and certainly never "active".
package introspect

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/tokengate/tokengate/internal/httpx"
	"github.com/tokengate/tokengate/internal/metrics"
)

// Defaults of Config.
const (
	DefaultCacheTTL    = 60 * time.Second
	DefaultNegativeTTL = 10 * time.Second
	DefaultTimeout     = 5 * time.Second
	DefaultCacheSize   = 100_000
	// MaxAnswerBytes caps an answer's body: an answer is a few hundred bytes of claims; a larger
	// body is a misbehaving server, and reading it whole would cost memory on every miss.
	MaxAnswerBytes = 64 << 10
)

// CacheName is the `cache` label of the answer cache's hit and miss series.
const CacheName = "introspection"

// ErrUnavailable is every failure to obtain an answer: the server unreachable, timing out,
// answering other than 200, or with a body that is not an RFC 7662 §2.2 answer. Errors
// returned by Introspect wrap it.
var ErrUnavailable = errors.New("introspection: no usable answer from the authorization server")

// Config configures a Client.
type Config struct {
	Provider string // the provider's name: metrics label and log context
	URL      string // the introspection endpoint (RFC 7662 §2)
	ClientID string
	// Auth authenticates tokengate's client at the endpoint (RFC 7662 §2.1 requires it): a
	// secret, an RFC 7523 assertion or, with an HTTPClient presenting the certificate, RFC 8705
	// mutual TLS. upstream's ClientAuths are the implementations.
	Auth        ClientAuth
	AllowHTTP   bool // as httpx.CheckURL
	CacheTTL    time.Duration
	NegativeTTL time.Duration
	CacheSize   int
	// Timeout bounds one call to the endpoint, whoever waits for it (default DefaultTimeout).
	Timeout    time.Duration
	HTTPClient *http.Client // default httpx.NewClient(); redirects are never followed
	Metrics    *metrics.Metrics
	Now        func() time.Time
	// Shared, when set and sealed, shares answers with the other replicas of the fleet (Redis):
	// a miss here asks it before the endpoint, and an answer obtained here is stored there for
	// as long as it may be reused. An unsealed store is not used: an answer whoever can write to
	// Redis could forge would admit any opaque token.
	Shared Shared
}

// Answer is a parsed introspection answer. It is shared by the cache: read only.
type Answer struct {
	Active bool
	// Claims holds every member of the answer (numbers as json.Number), `active` included.
	Claims map[string]any
	// Expiry is the answer's `exp`; zero when it has none.
	Expiry time.Time
}

type entry struct {
	ans   *Answer
	until time.Time
}

// Client introspects tokens at one endpoint; safe for concurrent use.
type Client struct {
	cfg    Config
	url    string
	http   *http.Client
	now    func() time.Time
	cache  *lru.Cache[[sha256.Size]byte, entry]
	flight singleflight.Group
	shared Shared // nil: answers stay in this replica
	scope  []byte // what besides the token selects an answer in the shared store
}

// ClientAuth is upstream.ClientAuth, declared here because upstream imports this package: it
// adds the client's credentials to the form or the headers of a request to endpoint, and
// returns an error naming no secret when it cannot (the request is then not sent).
type ClientAuth interface {
	Authenticate(ctx context.Context, endpoint string, form url.Values, header http.Header) error
}

// Shared is the part of upstream.Shared (the fleet's Redis) that answers need; declared here
// because upstream imports this package.
type Shared interface {
	LoadValue(ctx context.Context, kind, key string) ([]byte, bool, error)
	SaveValue(ctx context.Context, kind, key string, v []byte, until time.Time) error
	Sealed() bool
}

// sharedKind is the namespace of introspection answers in the shared store.
const sharedKind = "intro:"

// New checks cfg and builds a Client.
func New(cfg Config) (*Client, error) {
	if _, err := httpx.CheckURL(cfg.URL, cfg.AllowHTTP); err != nil {
		return nil, fmt.Errorf("introspect: provider %s: url: %w", cfg.Provider, err)
	}
	if cfg.ClientID == "" || cfg.Auth == nil {
		return nil, fmt.Errorf("introspect: provider %s: client_id and client authentication are required", cfg.Provider)
	}
	if cfg.CacheTTL < 0 || cfg.NegativeTTL < 0 || cfg.Timeout < 0 || cfg.CacheSize < 0 {
		return nil, fmt.Errorf("introspect: provider %s: negative setting", cfg.Provider)
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	c := &Client{cfg: cfg, url: cfg.URL, now: cfg.Now}
	if c.now == nil {
		c.now = time.Now
	}
	if cfg.HTTPClient != nil {
		c.http = httpx.NoRedirect(cfg.HTTPClient)
	} else {
		c.http = httpx.NewClient()
	}
	cache, err := lru.New[[sha256.Size]byte, entry](cfg.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("introspect: %w", err)
	}
	c.cache = cache
	if cfg.Shared != nil && cfg.Shared.Sealed() {
		c.shared = cfg.Shared
		// Another endpoint, or the same one asked as another client, may answer differently.
		c.scope = []byte("tokengate introspection v1\x00" + cfg.URL + "\x00" + cfg.ClientID + "\x00")
	}
	return c, nil
}

// Introspect returns the answer for the token whose SHA-256 is sum: a cached one while it is
// fresh, else one call to the endpoint shared by every concurrent caller with that token. Its
// error wraps ErrUnavailable (or is ctx's error); an inactive token is an Answer, not an error.
func (c *Client) Introspect(ctx context.Context, token string, sum [sha256.Size]byte) (*Answer, error) {
	if e, ok := c.cache.Get(sum); ok {
		if c.now().Before(e.until) {
			c.cfg.Metrics.CacheHit(CacheName)
			return e.ans, nil
		}
		c.cache.Remove(sum)
	}
	c.cfg.Metrics.CacheMiss(CacheName)
	ch := c.flight.DoChan(string(sum[:]), func() (any, error) {
		// The call is shared: one caller giving up must not cancel it for the others
		// (RFC 7662 §4 recommends caching precisely to spare the server repeated calls).
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
		defer cancel()
		if ans, ok := c.loadShared(cctx, sum); ok {
			return ans, nil
		}
		ans, err := c.call(cctx, token)
		if err != nil {
			c.cfg.Metrics.Introspection(c.cfg.Provider, "error")
			return nil, err
		}
		result := "inactive"
		if ans.Active {
			result = "active"
		}
		c.cfg.Metrics.Introspection(c.cfg.Provider, result)
		obtained := c.now()
		if until := c.deadlineFrom(ans, obtained); obtained.Before(until) {
			c.cache.Add(sum, entry{ans: ans, until: until})
			c.saveShared(cctx, sum, ans, obtained, until)
		}
		return ans, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*Answer), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// sharedKey names the answer for the token whose SHA-256 is sum in the shared store.
func (c *Client) sharedKey(sum [sha256.Size]byte) string {
	h := sha256.New()
	h.Write(c.scope)
	h.Write(sum[:])
	return string(h.Sum(nil))
}

// loadShared returns an answer another replica obtained, cached here until the earlier of its
// own deadline and the one this replica's rules give it (an answer never lives longer for
// having been shared). Any failure of the store is a miss: the endpoint is asked.
func (c *Client) loadShared(ctx context.Context, sum [sha256.Size]byte) (*Answer, bool) {
	if c.shared == nil {
		return nil, false
	}
	v, ok, err := c.shared.LoadValue(ctx, sharedKind, c.sharedKey(sum))
	if err != nil || !ok || len(v) < 16 {
		return nil, false
	}
	obtained := time.Unix(0, int64(binary.BigEndian.Uint64(v[:8])))
	until := time.Unix(0, int64(binary.BigEndian.Uint64(v[8:16])))
	ans, err := ParseAnswer(http.StatusOK, v[16:])
	if err != nil {
		return nil, false
	}
	// This replica's cache_ttl and negative_ttl count from when the endpoint answered.
	if local := c.deadlineFrom(ans, obtained); local.Before(until) {
		until = local
	}
	if !c.now().Before(until) {
		return nil, false
	}
	c.cfg.Metrics.Introspection(c.cfg.Provider, "shared")
	c.cache.Add(sum, entry{ans: ans, until: until})
	return ans, true
}

// saveShared stores ans, obtained from the endpoint at `obtained`, for the fleet until `until`:
// both times (Unix ns), then the answer as JSON (an inactive one as {"active":false}: whatever it
// carried was ignored).
func (c *Client) saveShared(ctx context.Context, sum [sha256.Size]byte, ans *Answer, obtained, until time.Time) {
	if c.shared == nil {
		return
	}
	body := []byte(`{"active":false}`)
	if ans.Active {
		var err error
		if body, err = json.Marshal(ans.Claims); err != nil {
			return
		}
	}
	v := make([]byte, 16, 16+len(body))
	binary.BigEndian.PutUint64(v[:8], uint64(obtained.UnixNano()))
	binary.BigEndian.PutUint64(v[8:], uint64(until.UnixNano()))
	_ = c.shared.SaveValue(ctx, sharedKind, c.sharedKey(sum), append(v, body...), until)
}

// deadlineFrom is how long ans, obtained from the endpoint at now, may be reused: an active
// answer at most CacheTTL and never past its exp (RFC 7662 §4: a cached answer must not outlive
// the token), an inactive one NegativeTTL.
func (c *Client) deadlineFrom(ans *Answer, now time.Time) time.Time {
	if !ans.Active {
		return now.Add(c.cfg.NegativeTTL)
	}
	until := now.Add(c.cfg.CacheTTL)
	if !ans.Expiry.IsZero() && ans.Expiry.Before(until) {
		until = ans.Expiry
	}
	return until
}

// call makes one RFC 7662 §2.1 request.
func (c *Client) call(ctx context.Context, token string) (*Answer, error) {
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	header := http.Header{}
	if err := c.cfg.Auth.Authenticate(ctx, c.url, form, header); err != nil {
		// A missing assertion file, a key that cannot sign: the endpoint is not asked.
		return nil, fmt.Errorf("%w: client authentication: %w", ErrUnavailable, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	req.Header = header
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		// The error text may quote the URL but never the token (it is in the body).
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the answer: %w", ErrUnavailable, err)
	}
	return ParseAnswer(resp.StatusCode, body)
}

// ParseAnswer reads an introspection response. Only a 200 whose body is one JSON object with a
// boolean `active` (RFC 7662 §2.2) is an answer; when active, an `exp` present must be a
// NumericDate (RFC 7519 §2). Anything else wraps ErrUnavailable. The body is never quoted in an
// error: it holds the token's claims.
func ParseAnswer(status int, body []byte) (*Answer, error) {
	if status != http.StatusOK {
		return nil, fmt.Errorf("%w: status %d", ErrUnavailable, status)
	}
	if len(body) > MaxAnswerBytes {
		return nil, fmt.Errorf("%w: answer larger than %d bytes", ErrUnavailable, MaxAnswerBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, fmt.Errorf("%w: answer is not a JSON object", ErrUnavailable)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrUnavailable)
	}
	active, ok := claims["active"].(bool)
	if !ok {
		return nil, fmt.Errorf("%w: answer has no boolean active", ErrUnavailable)
	}
	if !active {
		// RFC 7662 §2.2: an inactive answer SHOULD carry nothing else; whatever it carries is
		// ignored.
		return &Answer{}, nil
	}
	ans := &Answer{Active: true, Claims: claims}
	if v, ok := claims["exp"]; ok {
		exp, ok := numericDate(v)
		if !ok {
			return nil, fmt.Errorf("%w: exp is not a NumericDate", ErrUnavailable)
		}
		ans.Expiry = exp
	}
	return ans, nil
}

// numericDate reads a NumericDate (RFC 7519 §2: seconds, possibly fractional) of a plausible size.
func numericDate(v any) (time.Time, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f <= 0 || f > 1<<40 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}
