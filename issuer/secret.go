package issuer

import "crypto/sha256"

// secretMatches reports whether secret is one of the accepted digests of c (nil: unknown client).
//
// Timing: the presented secret is hashed once (its length is the caller's own), then compared
// with subtle.ConstantTimeCompare against max(len(accepted), minCompares) fixed-size 32-byte
// digests, the missing slots filled with i.dummy (a random digest no secret is known to match).
// So an unknown client, a client with one secret and a client with two do the same work, and
// which slot matched is not observable; a client with more than two secrets costs one more
// 32-byte compare per extra secret. The remaining difference is the map lookup of the client_id,
// which takes the same path for a present and an absent key, far below network jitter.
func (i *Issuer) secretMatches(c *client, secret string) bool {
	presented := sha256.Sum256([]byte(secret))
	var accepted [][32]byte
	if c != nil {
		accepted = c.hashes
	}
	n := max(len(accepted), minCompares)
	match := 0
	for k := range n {
		want := &i.dummy
		if k < len(accepted) {
			want = &accepted[k]
		}
		match |= i.compare(presented[:], want[:])
	}
	return match == 1 && c != nil
}

// VerifyClientSecret reports whether secret is an accepted secret of the registered client
// clientID, for the authorizer's `clients: self` routes (docs/configuration.md#rules-across-keys).
// It is the token endpoint's comparison (secretMatches): the same constant-time work whether the
// client exists, has one secret or two, and false for an empty id or secret, as the token endpoint
// answers them. It applies no failure limiter: the caller applies the shared one (authlimit)
// itself, Allow before and Fail after a false answer.
//
// Concurrency: an *Issuer is immutable after New, so VerifyClientSecret may be called from any
// number of goroutines at once, also while a reload builds the next Issuer; it answers for the
// clients of this Issuer, so after a reload callers must ask the new one. A nil *Issuer knows no
// client and answers false.
func (i *Issuer) VerifyClientSecret(clientID, secret string) bool {
	if i == nil {
		return false
	}
	ok := i.secretMatches(i.clients[clientID], secret)
	return ok && clientID != "" && secret != ""
}
