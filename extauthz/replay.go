package extauthz

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/tokengate/tokengate/internal/upstream"
)

// defaultReplaySize is the replay cache's size when none is given: room for 100,000 proofs, about
// 800 DPoP requests a second each remembered for two minutes.
const defaultReplaySize = 100_000

// replayKind is the namespace of DPoP jtis in the shared store.
const replayKind = "jti:"

// ReplayCache remembers the jti of accepted DPoP proofs until they expire (RFC 9449 §11.1), in a
// bounded LRU keyed by the jti's SHA-256 (the jti itself is never kept). It never forgets a jti
// before its window ends on its own authority: when it is full of live entries and no shared store
// holds the fleet's record, a new proof is refused (ErrReplayFull) rather than an old one
// forgotten, since a forgotten jti could be replayed (docs/security.md#bound-tokens). With a
// shared store (Share), a jti any replica of the fleet accepted within its window is a replay
// too, and the store (entries with a TTL) is the record: the local cache may then evict.
// Safe for concurrent use.
type ReplayCache struct {
	mu   sync.Mutex
	lru  *simplelru.LRU[[sha256.Size]byte, time.Time]
	size int

	shared upstream.Shared // nil: this replica alone
	log    *slog.Logger
	outage atomic.Bool // the shared store failed and that was logged; reset when it answers
}

// NewReplayCache returns a cache of size entries (defaultReplaySize when size <= 0).
func NewReplayCache(size int) *ReplayCache {
	if size <= 0 {
		size = defaultReplaySize
	}
	l, err := simplelru.NewLRU[[sha256.Size]byte, time.Time](size, nil)
	if err != nil { // only for size <= 0
		panic(err)
	}
	return &ReplayCache{lru: l, size: size}
}

// ErrReplayFull is Seen's answer when the cache holds only live jtis and no shared store keeps
// the fleet's record: the proof is refused, never an earlier jti forgotten.
var ErrReplayFull = errors.New("the DPoP replay cache is full")

// Share makes the cache consult s after its own entries, so that a proof accepted by one replica
// is refused by every other (RFC 9449 §11.1: the server must not accept a jti twice within the
// window, and the server here is the fleet). Call it before the first Seen.
func (c *ReplayCache) Share(s upstream.Shared, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c.shared, c.log = s, log
}

// Seen reports whether jti was recorded and has not expired at now; either way it is recorded
// until `until`, in one step (two Checks with one proof never both pass). With a shared store,
// a jti this replica has not seen is claimed there: a claim some other replica already holds is a
// replay. When the store fails, this replica's own record decides (logged once per outage).
func (c *ReplayCache) Seen(jti string, now, until time.Time) (bool, error) {
	key := sha256.Sum256([]byte(jti))
	c.mu.Lock()
	if exp, ok := c.lru.Get(key); ok && now.Before(exp) {
		c.mu.Unlock()
		return true, nil
	}
	if c.shared == nil && c.lru.Len() >= c.size {
		if _, exp, ok := c.lru.GetOldest(); ok && now.Before(exp) {
			c.mu.Unlock()
			return false, ErrReplayFull
		}
	}
	c.lru.Add(key, until)
	c.mu.Unlock()
	if c.shared == nil {
		return false, nil
	}
	// The store bounds the call by its own timeout; the Check has already verified the proof,
	// so the only wait added is one Redis round trip.
	first, err := c.shared.Claim(context.Background(), replayKind, string(key[:]), until)
	if err != nil {
		if !c.outage.Swap(true) && !errors.Is(err, context.Canceled) {
			c.log.Warn("DPoP replay cache: shared store unavailable, replays are refused per replica only until it answers")
		}
		return false, nil
	}
	if c.outage.Swap(false) {
		c.log.Info("DPoP replay cache: shared store available again, replays are refused fleet-wide")
	}
	return !first, nil
}
