package issuer

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// limiter is a set of token buckets of failed client authentications, one per key, held in an
// LRU so that its memory is bounded whatever keys an attacker sends (RFC 6749 §2.3.1 makes
// brute-force protection a MUST). Keys are SHA-256 digests, so a 60 KiB client_id costs 32 bytes.
//
// A bucket holds up to burst tokens and regains one per interval. Every authentication attempt
// reserves a token before the secret is compared and gets it back when the secret was right; so
// concurrent guesses cannot exceed the burst, and a client whose bucket is empty is refused
// (429) even with its good secret until a token has come back, which keeps a guesser from
// learning the right secret during the window. The price is that an attacker who knows a
// client_id can delay that client by failing on purpose; the window is short and ends by itself.
//
// An evicted bucket comes back full. Evicting one on purpose needs LimiterSize distinct keys,
// which the per-IP bucket throttles.
//
// The per-IP limiter does not reserve (allow, then fail after a wrong secret): many clients
// behind one proxy share its address, and a reservation held during every authentication could
// refuse legitimate bursts there. Concurrent guesses from one address can therefore exceed its
// burst by the number in flight; the per-client_id reservation still bounds guesses at a client.
type limiter struct {
	mu       sync.Mutex
	burst    float64
	interval time.Duration
	buckets  *simplelru.LRU[[32]byte, *bucket]
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(burst int, interval time.Duration, size int) *limiter {
	lru, err := simplelru.NewLRU[[32]byte, *bucket](size, nil)
	if err != nil { // only for size <= 0, which orInt rules out
		lru, _ = simplelru.NewLRU[[32]byte, *bucket](DefaultLimiterSize, nil)
	}
	return &limiter{burst: float64(burst), interval: interval, buckets: lru}
}

func limiterKey(kind byte, key string) [32]byte {
	h := sha256.New()
	h.Write([]byte{kind})
	h.Write([]byte(key))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// refill brings b up to date at now. A clock that went backwards adds nothing.
func (l *limiter) refill(b *bucket, now time.Time) {
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(l.burst, b.tokens+float64(elapsed)/float64(l.interval))
		b.last = now
	}
}

// bucketAt returns key's bucket brought up to date at now; a key seen for the first time gets a
// full one. l.mu must be held.
func (l *limiter) bucketAt(key [32]byte, now time.Time) *bucket {
	b, found := l.buckets.Get(key)
	if !found {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets.Add(key, b)
	}
	l.refill(b, now)
	return b
}

// untilOne is how long b, holding less than one attempt, takes to regain one.
func (l *limiter) untilOne(b *bucket) time.Duration {
	return time.Duration((1 - b.tokens) * float64(l.interval))
}

// take reserves one attempt for key. When the bucket is empty it reserves nothing and says how
// long until one attempt comes back.
func (l *limiter) take(key [32]byte, now time.Time) (ok bool, wait time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketAt(key, now)
	if b.tokens < 1 {
		return false, l.untilOne(b)
	}
	b.tokens--
	return true, 0
}

// allow reports whether key's bucket holds an attempt, without taking it.
func (l *limiter) allow(key [32]byte, now time.Time) (ok bool, wait time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, found := l.buckets.Get(key)
	if !found {
		return true, 0
	}
	l.refill(b, now)
	if b.tokens < 1 {
		return false, l.untilOne(b)
	}
	return true, 0
}

// fail takes one attempt from key's bucket (a failed authentication), down to zero.
func (l *limiter) fail(key [32]byte, now time.Time) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketAt(key, now)
	b.tokens = max(0, b.tokens-1)
}

// refund gives back the attempt reserved by take (the secret was right). A bucket evicted in
// between is gone, and was full when it comes back anyway.
func (l *limiter) refund(key [32]byte, now time.Time) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.buckets.Peek(key); ok {
		l.refill(b, now)
		b.tokens = min(l.burst, b.tokens+1)
	}
}
