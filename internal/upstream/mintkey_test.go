package upstream

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/tokengate/tokengate/issuer"
)

// TestMintSourceKeyBearerSum: a caller that carries its token's SHA-256 (the verifier computed it
// for its own cache) gets the key of the same caller without it, so the source can skip the
// second hash; another token's sum gives another key.
func TestMintSourceKeyBearerSum(t *testing.T) {
	c := newTestCache(t, newClock(), nil)
	src := NewMintSource(c, "r", signerFunc{jwks: []byte(`{"keys":[]}`)}, issuer.MintRequest{Audience: "a", TTL: time.Minute})
	caller := Caller{Subject: "alice", ClientID: "web", Bearer: "tok"}
	with := caller
	with.BearerSum = sha256.Sum256([]byte("tok"))
	other := caller
	other.BearerSum = sha256.Sum256([]byte("tok2"))
	if src.key(with) != src.key(caller) {
		t.Error("the caller's own sum gives another key than hashing its token")
	}
	if src.key(other) == src.key(caller) {
		t.Error("another token's sum gives the same key")
	}
	if n := testing.AllocsPerRun(100, func() { _ = src.key(with) }); n > 1 {
		t.Errorf("key with a precomputed sum makes %.0f allocations, want 1 (the key string)", n)
	}
}
