// Package authlimit is the failure limiter of failed client authentications (SPEC section 6,
// "Failure limiter"), shared by the token endpoint, the introspection endpoint and the
// `client_credentials` routes of the authorizer, and the rule that says who the caller is
// (ClientIP).
//
// TODO(helper): implement. The API below is the contract the issuer and extauthz code against.
package authlimit

import (
	"net/netip"
	"time"
)

// Defaults of SPEC section 6.
const (
	DefaultClientFailures = 5               // per (client id, caller IP) within Window
	DefaultIPFailures     = 50              // per caller IP within Window
	DefaultWindow         = 5 * time.Minute // failures older than this are forgotten
	DefaultPenalty        = 60 * time.Second
	DefaultSize           = 100_000 // keys held (an LRU), so memory is bounded whatever keys arrive
)

// Options configure a Limiter; zero values take the defaults.
type Options struct {
	ClientFailures, IPFailures int
	Window, Penalty            time.Duration
	Size                       int
	Now                        func() time.Time
}

// Limiter counts failed client authentications per (client id, caller IP) and per caller IP.
// Safe for concurrent use.
type Limiter struct {
	opts Options
}

// New returns a Limiter.
func New(opts Options) *Limiter { return &Limiter{opts: opts} }

// Allow reports whether an authentication of clientID from ip may proceed. When it may not,
// retryAfter is how long until it may (for Retry-After). A nil Limiter allows everything.
func (l *Limiter) Allow(clientID string, ip netip.Addr) (retryAfter time.Duration, ok bool) {
	return 0, true
}

// Fail records one failed authentication of clientID from ip.
func (l *Limiter) Fail(clientID string, ip netip.Addr) {}
