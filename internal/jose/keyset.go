package jose

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

const (
	// MaxKeySetKeys is how many JWKs of a set ParseKeySet considers; the rest
	// are dropped unread. IdPs publish a handful of keys.
	MaxKeySetKeys = 100
	// MaxKeySetBytes bounds the document ParseKeySet accepts. Callers that
	// fetch JWKS should cap the body well below this first.
	MaxKeySetBytes = 1 << 20
)

// privateMembers are JWK members that only private or symmetric keys carry
// (RFC 7518 §6.2.2, §6.3.2, §6.4.1). A published verification key with any of
// them is a leaked private key or a confusion attempt: dropped.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// verifyKey is one usable public key of a KeySet.
type verifyKey struct {
	kid    string
	hasKid bool
	alg    string // "" when the JWK has none
	kty    string
	crv    string // "P-256", "P-384", "P-521", "Ed25519"; "" for RSA
	pub    any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// fits reports whether alg may be verified with k (RFC 8725 §3.1;
// docs/security.md#jose-hardening): the key's alg when it has one, else any
// algorithm of its key type and curve. HMAC and none are never in verifyAlgs,
// so a key can never serve them.
func (k *verifyKey) fits(alg string) bool {
	info, ok := verifyAlgs[alg]
	if !ok {
		return false
	}
	if k.alg != "" {
		return k.alg == alg
	}
	return info.kty == k.kty && info.crv == k.crv
}

// KeySet is an immutable set of verification keys, safe for concurrent use.
type KeySet struct {
	keys  []verifyKey
	byKid map[string]int
}

// Len returns the number of usable keys.
func (s *KeySet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.keys)
}

// Has reports whether a usable key with this kid is in the set.
func (s *KeySet) Has(kid string) bool {
	if s == nil {
		return false
	}
	_, ok := s.byKid[kid]
	return ok
}

// ParseKeySet reads a JWK Set (RFC 7517 §5) and keeps only keys usable for
// verifying signatures (RFC 8725 §3.1, RFC 7518 §3.3; docs/upstream.md#caches).
// A key is dropped, with a reason in the returned slice ("key 3: RSA key
// shorter than 2048 bits"; the index is the position in "keys", no key material
// or kid appears), when it:
//   - is not a JSON object, has invalid UTF-8 or duplicate member names;
//   - has kty "oct" or another type than RSA, EC, OKP (Ed25519);
//   - carries private members (d, p, q, dp, dq, qi, oth, k);
//   - has "use" other than "sig", or "key_ops" without "verify";
//   - has an alg that is none, HS*, unknown, or does not fit its type/curve;
//   - has a kid that is not a printable-ASCII string of at most 256 bytes;
//   - is RSA under 2048 bits or with a bad exponent, EC off its curve or on
//     an unsupported curve, OKP other than Ed25519, or fails jwx parsing;
//   - repeats the kid of an earlier usable key: the FIRST one is kept (a
//     later duplicate cannot shadow a key verifiers already rely on);
//   - comes after the first MaxKeySetKeys entries.
//
// The error wraps ErrNoUsableKeys when no key remains (also for an empty set
// and for a document that is not a JWK Set, which additionally wraps
// ErrMalformed), so a caller refreshing a cache keeps its last good set
// (docs/security.md#jose-hardening: "{"keys":[]}" must not replace a good set).
func ParseKeySet(data []byte) (*KeySet, []string, error) {
	raws, err := splitKeySet(data)
	if err != nil {
		return nil, nil, err
	}
	var dropped []string
	if len(raws) > MaxKeySetKeys {
		dropped = append(dropped, fmt.Sprintf("keys %d..%d: more than %d keys in set", MaxKeySetKeys, len(raws)-1, MaxKeySetKeys))
		raws = raws[:MaxKeySetKeys]
	}
	ks := &KeySet{byKid: make(map[string]int)}
	for i, raw := range raws {
		k, reason := parseVerifyKey(raw)
		if reason == "" && k.hasKid {
			if _, dup := ks.byKid[k.kid]; dup {
				reason = "duplicate kid (first key kept)"
			}
		}
		if reason != "" {
			dropped = append(dropped, fmt.Sprintf("key %d: %s", i, reason))
			continue
		}
		if k.hasKid {
			ks.byKid[k.kid] = len(ks.keys)
		}
		ks.keys = append(ks.keys, k)
	}
	if len(ks.keys) == 0 {
		return nil, dropped, fail(ErrNoUsableKeys, "no usable key in set")
	}
	return ks, dropped, nil
}

// splitKeySet checks the outer document, {"keys":[...]} with no duplicate
// member names at the top level, and returns each element of "keys" raw.
func splitKeySet(data []byte) ([]json.RawMessage, error) {
	bad := func(reason string) error {
		return &joseError{kind: ErrNoUsableKeys, reason: reason, also: ErrMalformed}
	}
	if len(data) > MaxKeySetBytes {
		return nil, bad("key set too large")
	}
	if !utf8.Valid(data) {
		return nil, bad("key set is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, bad("key set is not a JSON object")
	}
	var keys []json.RawMessage
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		name, ok := tok.(string)
		if err != nil || !ok {
			return nil, bad("key set is not valid JSON")
		}
		if seen[name] {
			return nil, bad("key set has duplicate member names")
		}
		seen[name] = true
		if name != "keys" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, bad("key set is not valid JSON")
			}
			continue
		}
		if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
			return nil, bad(`key set "keys" is not an array`)
		}
		keys = []json.RawMessage{}
		for dec.More() {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, bad("key set is not valid JSON")
			}
			keys = append(keys, raw)
		}
		if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
			return nil, bad("key set is not valid JSON")
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, bad("key set is not valid JSON")
	}
	if _, err := dec.Token(); err == nil {
		return nil, bad("trailing data after key set")
	}
	if keys == nil {
		return nil, bad(`key set has no "keys" member`)
	}
	return keys, nil
}

// parseVerifyKey validates one JWK and converts it with jwx. The reason is a
// fixed text ("" when the key is usable).
func parseVerifyKey(raw json.RawMessage) (verifyKey, string) {
	var k verifyKey
	obj, reason := decodeStrictObject(raw)
	if reason != "" {
		return k, "not a valid JWK object (" + reason + ")"
	}
	kty, _ := obj["kty"].(string)
	switch kty {
	case ktyRSA, ktyEC, ktyOKP:
	case "oct":
		return k, "symmetric key (kty oct)"
	default:
		return k, "unsupported key type"
	}
	k.kty = kty
	for _, m := range privateMembers {
		if _, ok := obj[m]; ok {
			return k, "carries private key material"
		}
	}
	if v, ok := obj["use"]; ok && v != "sig" {
		return k, `"use" is not "sig"`
	}
	if v, ok := obj["key_ops"]; ok {
		ops, isArr := v.([]any)
		if !isArr || !slices.Contains(ops, any("verify")) {
			return k, `"key_ops" does not allow "verify"`
		}
	}
	if v, ok := obj["alg"]; ok {
		alg, isStr := v.(string)
		switch {
		case !isStr:
			return k, "alg is not a string"
		case strings.EqualFold(alg, "none"):
			return k, "alg none"
		case strings.HasPrefix(strings.ToUpper(alg), "HS"):
			return k, "HMAC alg"
		}
		info, known := verifyAlgs[alg]
		if !known {
			return k, "alg is not a supported signature algorithm"
		}
		if info.kty != kty {
			return k, "alg does not fit the key type"
		}
		k.alg = alg
	}
	if v, ok := obj["kid"]; ok {
		kid, isStr := v.(string)
		if !isStr || !validKeyID(kid) {
			return k, "kid is not a short printable string"
		}
		k.kid, k.hasKid = kid, true
	}

	key, err := jwk.ParseKey(raw)
	if err != nil {
		return k, "invalid key parameters"
	}
	var pub any
	if err := key.Raw(&pub); err != nil {
		return k, "invalid key parameters"
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if p.N == nil || p.N.BitLen() < minRSABits {
			return k, "RSA key shorter than 2048 bits"
		}
		if p.N.BitLen() > maxRSABits {
			return k, "RSA key longer than 8192 bits"
		}
		if p.N.Bit(0) == 0 || p.E < 3 || p.E%2 == 0 {
			return k, "invalid RSA key"
		}
	case *ecdsa.PublicKey:
		if p.Curve == nil {
			return k, "unsupported EC curve"
		}
		switch name := p.Curve.Params().Name; name {
		case "P-256", "P-384", "P-521":
			k.crv = name
		default:
			return k, "unsupported EC curve"
		}
		// ECDH conversion rejects points that are not on the curve
		// (Go CVE-2022-23806 class, jwx 2.0.8 invalid-curve fix).
		if _, err := p.ECDH(); err != nil {
			return k, "EC point is not on the curve"
		}
	case ed25519.PublicKey:
		if len(p) != ed25519.PublicKeySize {
			return k, "invalid Ed25519 key"
		}
		k.crv = "Ed25519"
	default:
		return k, "unsupported key type"
	}
	if k.alg != "" && verifyAlgs[k.alg].crv != k.crv {
		return k, "alg does not fit the key curve"
	}
	k.pub = pub
	return k, ""
}
