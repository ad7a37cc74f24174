package extauthz_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tokengate/tokengate/extauthz"
)

// TestReplayCacheNeverForgetsALiveJTI: a full cache with no shared store refuses a new proof
// rather than evict a jti whose window is still open (RFC 9449 §11.1: evicting it would let that
// proof be replayed); once the oldest entry has expired, new proofs are taken again.
func TestReplayCacheNeverForgetsALiveJTI(t *testing.T) {
	c := extauthz.NewReplayCache(2)
	now := time.Unix(1_800_000_000, 0)
	for _, jti := range []string{"a", "b"} {
		if seen, err := c.Seen(jti, now, now.Add(time.Minute)); seen || err != nil {
			t.Fatalf("%s: seen %v err %v", jti, seen, err)
		}
	}
	if _, err := c.Seen("c", now, now.Add(time.Minute)); !errors.Is(err, extauthz.ErrReplayFull) {
		t.Fatalf("a third live proof in a cache of two: err = %v, want ErrReplayFull", err)
	}
	if seen, _ := c.Seen("a", now.Add(time.Second), now.Add(time.Minute)); !seen {
		t.Fatal("a was forgotten while its window was open")
	}
	later := now.Add(2 * time.Minute) // a and b have expired
	if seen, err := c.Seen("c", later, later.Add(time.Minute)); seen || err != nil {
		t.Fatalf("after expiry: seen %v err %v", seen, err)
	}
}
