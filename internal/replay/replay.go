// Package replay remembers one-time identifiers (the jti of a DPoP proof, RFC 9449 §11.1, or of a
// client assertion, RFC 7523 §3 item 7) until they expire, so that each is accepted once: by
// this process alone, or by the whole fleet when a shared store (Redis) holds the record.
package replay

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// DefaultSize is a cache's size when none is given: 100,000 live identifiers, about 800 a second
// each remembered for two minutes.
const DefaultSize = 100_000

// The namespaces of the identifiers in the shared store, one per kind of identifier.
const (
	KindDPoP            = "jti:"  // DPoP proof jtis (RFC 9449 §11.1)
	KindClientAssertion = "ajti:" // client assertion jtis at the token endpoint (RFC 7523 §3 item 7)
)

// ErrFull is Seen's answer when the cache holds only live identifiers and no shared store keeps
// the fleet's record (none configured, or it is failing): the new one is refused, never a live
// one forgotten (a forgotten identifier could be replayed).
var ErrFull = errors.New("replay: the cache is full of live identifiers")

// Shared is the fleet's record of identifiers; upstream.Shared (Redis) implements it.
type Shared interface {
	// Claim records key under kind until `until` unless some replica already did: first is true
	// only for the one caller that recorded it (SET NX: the first writer wins).
	Claim(ctx context.Context, kind, key string, until time.Time) (first bool, err error)
}

// Key is the cache key of identifier id within scope (such as the client whose assertion it
// is; "" for none): a SHA-256, so that the identifier itself is never kept. A scope is
// length-prefixed, so no (scope, id) pair shares its key with another; without one the key is
// the id's plain SHA-256, as DPoP jtis have always been stored, so replicas of two versions
// still share one record.
func Key(scope, id string) [sha256.Size]byte {
	if scope == "" {
		return sha256.Sum256([]byte(id))
	}
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(scope)))
	h.Write(n[:])
	h.Write([]byte(scope))
	h.Write([]byte(id))
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// Cache is a bounded record of identifiers, each kept until its expiry. Entries leave in
// insertion order, and an identifier's lifetime is short and bounded by its checker, so the
// oldest entry is the first (or nearly) to expire. Safe for concurrent use.
type Cache struct {
	mu   sync.Mutex
	lru  *simplelru.LRU[[sha256.Size]byte, time.Time]
	size int

	shared Shared // nil: this process alone
	kind   string // the namespace of this cache's keys in the shared store
	name   string // what the cache holds, for its log lines
	log    *slog.Logger
	outage atomic.Bool // the shared store failed and that was logged; reset when it answers
}

// New returns a cache of size entries (DefaultSize when size <= 0).
func New(size int) *Cache {
	if size <= 0 {
		size = DefaultSize
	}
	l, err := simplelru.NewLRU[[sha256.Size]byte, time.Time](size, nil)
	if err != nil { // only for size <= 0
		panic(err)
	}
	return &Cache{lru: l, size: size}
}

// Share makes the cache claim every identifier it has not seen in s, under kind, so that an
// identifier one replica accepted is refused by every other (the server that must not accept it
// twice is the fleet). name says what the cache holds in log lines. The store then keeps the
// record (entries with a TTL), and the local cache may forget early, except while the store is
// failing (Seen). Call it before the first Seen.
func (c *Cache) Share(s Shared, kind, name string, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c.shared, c.kind, c.name, c.log = s, kind, name, log
}

// Seen reports whether key was recorded and has not expired at now; either way it is recorded
// until `until`, in one step (two requests with one identifier never both pass). With a shared
// store, a key this process has not seen is claimed there: a claim another replica holds is a
// replay. When the store fails, this process's own record decides (logged once per outage).
//
// A full cache forgets its oldest entry only when that is safe: the entry has expired, or the
// shared store, answering, keeps the record. With no store, or while the store is failing (the
// local cache is then the only record), a cache full of live identifiers refuses the new one
// with ErrFull rather than forget one that could then be replayed on this replica (RFC 9449
// §11.1, RFC 7523 §3 item 7). In an outage such a refusal first asks the store, so that the
// first answer ends the outage and eviction resumes.
func (c *Cache) Seen(ctx context.Context, key [sha256.Size]byte, now, until time.Time) (bool, error) {
	c.mu.Lock()
	if exp, ok := c.lru.Peek(key); ok && now.Before(exp) {
		c.mu.Unlock()
		return true, nil
	}
	if !c.makeRoom(now, c.shared != nil && !c.outage.Load()) {
		c.mu.Unlock()
		if c.shared == nil {
			return false, ErrFull
		}
		first, err := c.claim(ctx, key, until)
		if err != nil {
			return false, ErrFull
		}
		if !first {
			return true, nil
		}
		// The store answered and holds the record: the local cache may forget again.
		c.mu.Lock()
		c.makeRoom(now, true)
		c.lru.Add(key, until)
		c.mu.Unlock()
		return false, nil
	}
	c.lru.Add(key, until)
	c.mu.Unlock()
	if c.shared == nil {
		return false, nil
	}
	first, err := c.claim(ctx, key, until)
	if err != nil {
		return false, nil
	}
	return !first, nil
}

// makeRoom removes the oldest entries until there is room for one more, live ones only when
// evictLive; it reports whether there is room. c.mu must be held.
func (c *Cache) makeRoom(now time.Time, evictLive bool) bool {
	for c.lru.Len() >= c.size {
		if _, exp, _ := c.lru.GetOldest(); now.Before(exp) && !evictLive {
			return false
		}
		c.lru.RemoveOldest()
	}
	return true
}

// claim claims key in the shared store and tracks the outage: first is true for the replica
// that recorded it; an error means the store did not answer (logged once per outage).
func (c *Cache) claim(ctx context.Context, key [sha256.Size]byte, until time.Time) (first bool, err error) {
	// The store bounds the call by its own timeout; the only wait added is one round trip.
	first, err = c.shared.Claim(context.WithoutCancel(ctx), c.kind, string(key[:]), until)
	if err != nil {
		if !c.outage.Swap(true) {
			c.log.Warn(c.name + " replay cache: shared store unavailable, replays are refused per replica only until it answers")
		}
		return false, fmt.Errorf("replay: shared store: %w", err)
	}
	if c.outage.Swap(false) {
		c.log.Info(c.name + " replay cache: shared store available again, replays are refused fleet-wide")
	}
	return first, nil
}
