package upstream

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
)

// Key is the cache key of one upstream token: a SHA-256 digest (32 raw bytes in a string) of
// everything that selects the token. It never contains a secret: the client secret enters it
// only as its own SHA-256, and the whole encoding is hashed again.
type Key string

// String is a short hex prefix of the key, for logs.
func (k Key) String() string {
	if len(k) < 8 {
		return hex.EncodeToString([]byte(k))
	}
	return hex.EncodeToString([]byte(k[:8]))
}

// keyVersion starts every key's encoding: a change of the encoding changes it, so a shared
// Store never serves a token under a key that meant something else.
const keyVersion = "tokengate/upstream/v1"

// Hex is the full hex form of the key (for a shared store's key names).
func (k Key) Hex() string { return hex.EncodeToString([]byte(k)) }

// Every key is built in this package: CredentialsKey for fetch and exchange, MintSource.key
// for minted tokens.

// CredentialsKey is the key of the token selected by cc in the given mode ("fetch" or
// "exchange"). Two ClientCredentials that differ in the mode, token URL, client id, secret,
// scope set, audience, endpoint parameters or auth style never share a key; the order of the
// scopes and of the endpoint parameter names does not matter (the order of one parameter's
// values does, as it does on the wire).
func CredentialsKey(mode string, cc ClientCredentials) Key {
	// One stack buffer, hashed once: this runs on every request (the hot path).
	var stack [512]byte
	b := stack[:0]
	secret := sha256.Sum256([]byte(cc.ClientSecret))
	b = appendField(b, keyVersion)
	b = appendField(b, mode)
	b = appendField(b, cc.TokenURL)
	b = appendField(b, cc.ClientID)
	b = appendField(b, string(secret[:]))
	style := cc.AuthStyle
	if style == "" {
		style = AuthStyleBasic
	}
	b = appendField(b, style)
	scopes := cc.Scopes
	if !slices.IsSorted(scopes) {
		scopes = slices.Clone(scopes)
		slices.Sort(scopes)
	}
	n := 0
	for j, s := range scopes {
		if j == 0 || s != scopes[j-1] {
			n++
		}
	}
	b = appendCount(b, n)
	for j, s := range scopes {
		if j == 0 || s != scopes[j-1] {
			b = appendField(b, s)
		}
	}
	b = appendField(b, cc.Audience)
	if a, ok := cc.Auth.(assertionAuth); ok {
		// Which key or assertion file authenticates the client (never a secret value).
		b = appendField(b, a.authID())
	}
	var nameStack [8]string
	names := nameStack[:0]
	for k := range cc.EndpointParams {
		names = append(names, k)
	}
	slices.Sort(names)
	b = appendCount(b, len(names))
	for _, k := range names {
		b = appendField(b, k)
		vs := cc.EndpointParams[k]
		b = appendCount(b, len(vs))
		for _, v := range vs {
			b = appendField(b, v)
		}
	}
	sum := sha256.Sum256(b)
	return Key(sum[:])
}

// appendField appends a length-prefixed field so that no two field lists share an encoding.
func appendField(b []byte, s string) []byte {
	b = appendCount(b, len(s))
	return append(b, s...)
}

func appendCount(b []byte, n int) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(n))
}
