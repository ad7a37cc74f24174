package issuer

import (
	"crypto/sha256"
	"slices"
)

// What only the tests need of the issuer; none of it is part of its API.

// ErrorCodes lists every `error` value the issuer's endpoints can answer (RFC 6749 §5.2, RFC
// 8707 §2, RFC 8693 §2.2.2, and slow_down from RFC 8628 §3.5), for the tests and fuzzers that
// check every answer.
var ErrorCodes = []string{ErrInvalidRequest, ErrInvalidClient, ErrInvalidGrant, ErrUnauthorizedClient,
	ErrUnsupportedGrantType, ErrInvalidScope, ErrInvalidTarget, ErrSlowDown, ErrServerError}

// KeyIDs are the published kids, the active one first.
func (i *Issuer) KeyIDs() []string { return slices.Clone(i.kids) }

// ActiveKeyID is the kid Mint and the token endpoint sign with (unless a client names its own).
func (i *Issuer) ActiveKeyID() string { return i.kids[0] }

// DigestSecret is the digest stored for a secret (what Client.SecretHashes holds): the digest
// that secrets.ParseHash reads from the client_secret_hash value secrets.Hash prints.
func DigestSecret(secret string) [32]byte { return sha256.Sum256([]byte(secret)) }
