package replay_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/replay"
)

// TestCacheNeverForgetsALiveIdentifier: identifiers are refused until their expiry, per scope;
// a full cache with no shared store refuses a new identifier rather than forget one whose
// window is still open (forgetting it would let it be replayed: RFC 9449 §11.1, RFC 7523 §3
// item 7); once the oldest has expired, there is room again.
func TestCacheNeverForgetsALiveIdentifier(t *testing.T) {
	c := replay.New(2)
	now := time.Unix(1_800_000_000, 0)
	exp := now.Add(time.Minute)
	for _, tc := range []struct {
		name      string
		scope, id string
		at        time.Time
		seen      bool
		err       error
	}{
		{"new", "a", "1", now, false, nil},
		{"replayed", "a", "1", now, true, nil},
		{"same id, other scope", "b", "1", now, false, nil},
		{"full of live entries: fail closed", "a", "2", now, false, replay.ErrFull},
		{"the refused one was not recorded", "a", "2", now, false, replay.ErrFull},
		{"still remembered while full", "a", "1", now.Add(time.Second), true, nil},
		{"the oldest expired: room again", "a", "2", exp, false, nil},
		{"an expired one is new again", "a", "1", exp.Add(time.Second), false, nil},
	} {
		seen, err := c.Seen(context.Background(), replay.Key(tc.scope, tc.id), tc.at, tc.at.Add(time.Minute))
		if seen != tc.seen || !errors.Is(err, tc.err) {
			t.Fatalf("%s: Seen(%s, %s) = %v, %v; want %v, %v", tc.name, tc.scope, tc.id, seen, err, tc.seen, tc.err)
		}
	}
}

// TestKeys: scopes cannot be forged by moving bytes between scope and id, and an unscoped key
// is the id's plain SHA-256 (the key DPoP jtis had before, so mixed-version fleets agree).
func TestKeys(t *testing.T) {
	if replay.Key("a", "bc") == replay.Key("ab", "c") || replay.Key("a", "b") == replay.Key("", "ab") {
		t.Fatal("two (scope, id) pairs share a key")
	}
	if replay.Key("", "jti-1") != sha256.Sum256([]byte("jti-1")) {
		t.Fatal("the unscoped key is not the id's SHA-256")
	}
}

// flakyStore is a shared store that keeps its record (SET NX) but can be made to fail, as Redis
// does when it is down: a fault a test cannot otherwise cause on demand between two calls.
type flakyStore struct {
	mu      sync.Mutex
	failing bool
	claimed map[string]time.Time
	calls   int
}

func (s *flakyStore) Claim(_ context.Context, kind, key string, until time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.failing {
		return false, errors.New("store down")
	}
	if _, ok := s.claimed[kind+key]; ok {
		return false, nil
	}
	s.claimed[kind+key] = until
	return true, nil
}

func (s *flakyStore) setFailing(f bool) {
	s.mu.Lock()
	s.failing = f
	s.mu.Unlock()
}

// TestSharedOutageNeverForgetsALiveIdentifier: with a shared store the local cache may forget
// live identifiers (the store keeps the record), but while the store fails the local cache is the
// only record, so a full cache of live identifiers refuses a new one (ErrFull) rather than let a
// forgotten one be replayed on this replica; when the store answers again, eviction resumes.
func TestSharedOutageNeverForgetsALiveIdentifier(t *testing.T) {
	store := &flakyStore{claimed: map[string]time.Time{}}
	c := replay.New(2)
	c.Share(store, replay.KindClientAssertion, "test", nil)
	now := time.Unix(1_800_000_000, 0)
	until := now.Add(time.Minute)
	for _, tc := range []struct {
		name    string
		id      string
		failing bool
		seen    bool
		err     error
	}{
		{"new, claimed in the store", "1", false, false, nil},
		{"new while the store fails: recorded locally", "2", true, false, nil},
		{"full of live entries in an outage: fail closed", "3", true, false, replay.ErrFull},
		{"the first is still remembered in the outage", "1", true, true, nil},
		{"the store answers again: room made by eviction", "3", false, false, nil},
		{"eviction goes on", "4", false, false, nil},
		{"an evicted identifier is refused by the store", "1", false, true, nil},
	} {
		store.setFailing(tc.failing)
		seen, err := c.Seen(context.Background(), replay.Key("client", tc.id), now, until)
		if seen != tc.seen || !errors.Is(err, tc.err) {
			t.Fatalf("%s: Seen(%s) = %v, %v; want %v, %v", tc.name, tc.id, seen, err, tc.seen, tc.err)
		}
	}
	if store.calls == 0 {
		t.Fatal("the store was never asked")
	}
}
