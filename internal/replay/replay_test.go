package replay_test

import (
	"context"
	"crypto/sha256"
	"errors"
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
