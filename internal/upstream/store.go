package upstream

import (
	"context"
	"errors"
	"time"
)

// Store is a second-level token cache shared by the replicas of a fleet (Redis, package
// redisstore). The Cache consults it only when its in-process layer misses or refreshes a fetch
// or exchange token, never on a local hit, so a slow store never slows the hot path.
//
// key is a Key: a SHA-256 digest of what selects the token, never a secret. Implementations
// must bound every call by their own timeout as well as ctx, and may fail fast (ErrStoreDown)
// while the backend is known to be down; any error makes the Cache fetch locally.
type Store interface {
	// Load returns the token shared under key; ok is false when there is none.
	Load(ctx context.Context, key Key) (tok Token, ok bool, err error)
	// Save shares tok under key until tok.Expiry.
	Save(ctx context.Context, key Key, tok Token) error
	// TryLock tries to make this replica the one that fetches key for the whole fleet. When
	// held is true the caller must call unlock when done (after Save); the lock is a lease that
	// the implementation keeps alive until unlock and that lapses on its own if this replica
	// dies, so the others can take over. held false with a nil error: another replica holds it.
	// A lock key that is no lease (no expiry) must be taken over, never reported as held: it would
	// block the key forever (docs/upstream.md#scale-out-replicas-share-tokens-through-redis). The
	// Cache itself stops waiting for a lock held past the route's timeout and fetches locally.
	TryLock(ctx context.Context, key Key) (unlock func(), held bool, err error)
}

// ErrStoreDown is returned by Store implementations that fail fast during an outage.
var ErrStoreDown = errors.New("upstream: shared token store unavailable")

// Shared is the rest of a fleet's shared memory (Redis, package redisstore): the DPoP jtis every
// replica has accepted and the introspection answers one replica has obtained. Like Store, each
// call is bounded by the implementation's own timeout and may fail fast with ErrStoreDown; a
// caller then decides alone, from its local cache.
//
// kind names a namespace ("jti:", "intro:"); key is a SHA-256 digest (its bytes), never a
// secret. The parameters are plain types so that a package this one imports (introspect) can
// declare the subset it uses.
type Shared interface {
	// Claim records key until `until` unless some replica already did: first is true only for
	// the one caller that recorded it (SET NX: the first writer wins, RFC 9449 §11.1).
	Claim(ctx context.Context, kind, key string, until time.Time) (first bool, err error)
	// LoadValue returns the value shared under key; ok is false when there is none or it does
	// not open (values are sealed when the store has an encryption key).
	LoadValue(ctx context.Context, kind, key string) (v []byte, ok bool, err error)
	// SaveValue shares v under key until `until`.
	SaveValue(ctx context.Context, kind, key string, v []byte, until time.Time) error
	// Sealed reports whether values are encrypted and authenticated, so that whoever can write to
	// the backend cannot forge one.
	Sealed() bool
}
