// Package jwks keeps the verification keys of each token provider: a remote JWK Set (RFC 7517
// §5) fetched from a jwks_uri or found by OpenID Connect discovery, refreshed in the background,
// or a static set for tokengate's own issuer.
//
// It deliberately does not use jwx's jwk.Cache (httprc): that cache has no size cap on bodies, no
// backoff, lets a failed first fetch poison the entry until the next interval and lets {"keys":[]}
// replace a good set (docs/security.md#jose-hardening). Parsing and key filtering are done by
// internal/jose, the only package that imports jwx.
package jwks

import (
	"context"

	"github.com/tokengate/tokengate/internal/jose"
)

// Source is the key set of one provider. Implementations are safe for concurrent use.
type Source interface {
	// Keys returns the current key set, or nil when no usable set has ever loaded.
	Keys() *jose.KeySet
	// Lookup returns the key set to verify a token whose header names kid. When the current
	// set lacks kid (or no set has loaded) a remote source refreshes, at most once per
	// unknown-kid interval and shared by every concurrent caller (OIDC Core §10.1.1), and waits
	// for that refresh at most until ctx is done. The result may still lack kid, and is nil
	// while no set has ever loaded.
	Lookup(ctx context.Context, kid string) *jose.KeySet
	// Ready is closed once a usable set has loaded.
	Ready() <-chan struct{}
	// Close stops background work. Keys and Lookup keep answering from the last set.
	Close()
}

// Static is a fixed key set held in process, for tokengate's own issuer (provider `issuer:
// self`): no HTTP, always ready.
type Static struct {
	keys  *jose.KeySet
	ready chan struct{}
}

// NewStatic parses a JWK Set document. The second result lists why keys were dropped (safe to
// log: no key material). A set without any usable key is an error wrapping jose.ErrNoUsableKeys.
func NewStatic(jwks []byte) (*Static, []string, error) {
	ks, dropped, err := jose.ParseKeySet(jwks)
	if err != nil {
		return nil, dropped, err
	}
	ready := make(chan struct{})
	close(ready)
	return &Static{keys: ks, ready: ready}, dropped, nil
}

// Keys returns the set.
func (s *Static) Keys() *jose.KeySet { return s.keys }

// Lookup returns the set: there is nothing to refresh.
func (s *Static) Lookup(context.Context, string) *jose.KeySet { return s.keys }

// Ready returns a closed channel.
func (s *Static) Ready() <-chan struct{} { return s.ready }

// Close does nothing.
func (s *Static) Close() {}
