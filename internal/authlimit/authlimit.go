// Package authlimit is the failure limiter of failed client authentications
// (docs/issuer.md#failure-limiter), shared by the token endpoint, the introspection endpoint and
// the `client_credentials` routes of the authorizer, and the rule that says who the caller is
// (ClientIP).
//
// RFC 6749 §2.3.1 requires protection against brute force at every endpoint that checks a client
// secret. The limiter counts failures per (client id, caller IP) and per caller IP, never per
// client id alone: a per-client-id count lets anyone who knows a client id lock its owner out
// from anywhere (issue 9, finding 7). A caller that fails too often is refused for a while,
// whatever it presents; everyone else is unaffected.
package authlimit

import (
	"crypto/sha256"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Defaults (docs/issuer.md#failure-limiter).
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
	// Size is the number of keys each of the two tables holds (least recently failed evicted).
	Size int
	// Now is the clock (time.Now when nil); tests pass a clock they move by hand.
	Now func() time.Time
}

// Limiter counts failed client authentications per (client id, caller IP) and per caller IP,
// where an IPv6 caller is its /64 (ipKey). Safe for concurrent use.
//
// A key is limited when its last `threshold` failures all lie within Window, and stays limited
// until Penalty after its last failure. A limited caller is refused before its secret is
// compared, so it never learns whether a guess during the penalty was right, and it records no
// further failure; once the penalty is over, each new failure (the threshold-th within the
// window again) limits it for another Penalty, so a persistent guesser gets about one guess per
// Penalty.
//
// Memory: each table is an LRU of at most Size entries; an entry is created only by a failure,
// its key is a SHA-256 digest (pairs) or a 16-byte address or /64 (IPs), so a 60 KiB client id costs 32
// bytes, and it holds the times of the last threshold failures (8 bytes each). Evicting an entry
// on purpose takes Size other failing keys, which, from one address, the per-IP limit stops.
//
// Allow and Fail are separate calls, so concurrent attempts of one key that all pass Allow before
// any of them fails are all judged: the overshoot is the attacker's concurrency at the moment the
// threshold is crossed, once per Penalty. A reservation would close that but would also refuse a
// client's legitimate parallel requests; secrets are ≥128-bit random values
// (docs/security.md#deliberate-choices), so the limiter is there to make guessing and lock-outs
// pointless, not to count exactly.
type Limiter struct {
	clientFailures, ipFailures int
	window, penalty            time.Duration
	now                        func() time.Time

	mu    sync.Mutex
	pairs *simplelru.LRU[[32]byte, *record]
	ips   *simplelru.LRU[[16]byte, *record]
}

// record is the recent failures of one key: the times of the last threshold failures, as Unix
// nanoseconds, in a ring that grows up to threshold slots (so memory follows the failures seen,
// not the threshold) and then wraps, next being the slot to overwrite.
type record struct {
	ring []int64
	next int
	last int64
}

// New returns a Limiter.
func New(opts Options) *Limiter {
	l := &Limiter{
		clientFailures: orInt(opts.ClientFailures, DefaultClientFailures),
		ipFailures:     orInt(opts.IPFailures, DefaultIPFailures),
		window:         orDuration(opts.Window, DefaultWindow),
		penalty:        orDuration(opts.Penalty, DefaultPenalty),
		now:            opts.Now,
	}
	if l.now == nil {
		l.now = time.Now
	}
	size := orInt(opts.Size, DefaultSize)
	// NewLRU fails only for a size ≤ 0, which orInt rules out.
	l.pairs, _ = simplelru.NewLRU[[32]byte, *record](size, nil)
	l.ips, _ = simplelru.NewLRU[[16]byte, *record](size, nil)
	return l
}

func orInt(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

func orDuration(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

// ipv6CallerBits is the prefix that identifies one IPv6 caller: a site or even a single host is
// given at least a /64 (RFC 6177 §2, RFC 7421 §1: the /64 boundary of SLAAC), so counting each
// /128 would give anyone with a /64 2^64 fresh addresses against the per-IP limit.
const ipv6CallerBits = 64

// ipKey is the caller as 16 bytes: an IPv4 address is itself (IPv4-mapped IPv6 is its IPv4
// address), an IPv6 address is its /64 (ipv6CallerBits), and a zone (which X-Forwarded-For could
// carry, arbitrarily long) is no part of it. The zero Addr (a peer that could not be parsed) is
// the all-zero key, one shared bucket.
func ipKey(ip netip.Addr) [16]byte {
	if !ip.IsValid() {
		return [16]byte{}
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		// Prefix cannot fail for a valid unzoned IPv6 address and 64 ≤ 128.
		p, _ := ip.Prefix(ipv6CallerBits)
		ip = p.Addr()
	}
	return ip.As16()
}

func pairKey(clientID string, ip [16]byte) [32]byte {
	h := sha256.New()
	h.Write(ip[:])
	h.Write([]byte(clientID))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// Allow reports whether an authentication of clientID from ip may proceed. When it may not,
// retryAfter is how long until it may (for Retry-After; positive and at most Penalty). A nil
// Limiter allows everything.
func (l *Limiter) Allow(clientID string, ip netip.Addr) (retryAfter time.Duration, ok bool) {
	if l == nil {
		return 0, true
	}
	now := l.now().UnixNano()
	ik := ipKey(ip)
	pk := pairKey(clientID, ik)
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	if r, found := l.pairs.Peek(pk); found {
		wait = max(wait, l.limited(r, l.clientFailures, now))
	}
	if r, found := l.ips.Peek(ik); found {
		wait = max(wait, l.limited(r, l.ipFailures, now))
	}
	if wait > 0 {
		return wait, false
	}
	return 0, true
}

// limited is how long r's key stays refused at now (0: not refused).
func (l *Limiter) limited(r *record, threshold int, now int64) time.Duration {
	if len(r.ring) < threshold {
		return 0
	}
	// The oldest of the last threshold failures; when it is inside the window, all are.
	oldest := r.ring[r.next]
	if now-oldest >= int64(l.window) {
		return 0
	}
	wait := time.Duration(r.last + int64(l.penalty) - now)
	if wait <= 0 {
		return 0
	}
	// A clock that went backwards never stretches the penalty past its length.
	return min(wait, l.penalty)
}

// Fail records one failed authentication of clientID from ip.
func (l *Limiter) Fail(clientID string, ip netip.Addr) {
	if l == nil {
		return
	}
	now := l.now().UnixNano()
	ik := ipKey(ip)
	pk := pairKey(clientID, ik)
	l.mu.Lock()
	defer l.mu.Unlock()
	add(l.pairs, pk, l.clientFailures, now)
	add(l.ips, ik, l.ipFailures, now)
}

func add[K comparable](table *simplelru.LRU[K, *record], k K, threshold int, now int64) {
	r, found := table.Get(k)
	if !found {
		r = &record{}
		table.Add(k, r)
	}
	if len(r.ring) < threshold {
		r.ring = append(r.ring, now)
	} else {
		r.ring[r.next] = now
		r.next = (r.next + 1) % threshold
	}
	r.last = max(r.last, now)
}
