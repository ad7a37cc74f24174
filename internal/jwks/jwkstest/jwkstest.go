// Package jwkstest provides real test doubles for JWKS consumers: keys generated with the
// standard library (so tests can sign any header and payload bytes, including malformed ones),
// JWK Set documents, and an HTTP JWKS/discovery server on 127.0.0.1 that counts requests and
// misbehaves on demand. It is for tests only.
package jwkstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
)

var b64 = base64.RawURLEncoding

// Key is a signing key pair with its kid and alg.
type Key struct {
	Kid, Alg string
	Signer   crypto.Signer
}

// NewKey generates a key for alg: ES256, ES384, ES512, RS256, RS384, RS512, PS256, PS384,
// PS512 (RSA 2048 bits) or EdDSA (Ed25519).
func NewKey(alg, kid string) (*Key, error) { return NewKeyBits(alg, kid, 2048) }

// NewKeyBits is NewKey with an RSA modulus size (to build deliberately weak keys).
func NewKeyBits(alg, kid string, rsaBits int) (*Key, error) {
	var s crypto.Signer
	var err error
	switch alg {
	case "ES256":
		s, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		s, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		s, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		s, err = rsa.GenerateKey(rand.Reader, rsaBits)
	case "EdDSA":
		_, s, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("jwkstest: unsupported alg %q", alg)
	}
	if err != nil {
		return nil, err
	}
	return &Key{Kid: kid, Alg: alg, Signer: s}, nil
}

// MustKey is NewKey that panics on error (tests only).
func MustKey(alg, kid string) *Key {
	k, err := NewKey(alg, kid)
	if err != nil {
		panic(err)
	}
	return k
}

// WithKid returns the same key pair under another kid (and alg, when alg is not empty).
func (k *Key) WithKid(kid, alg string) *Key {
	if alg == "" {
		alg = k.Alg
	}
	return &Key{Kid: kid, Alg: alg, Signer: k.Signer}
}

// PublicJWK is the public JWK (RFC 7517 §4, RFC 7518 §6) with kid, alg and use "sig".
func (k *Key) PublicJWK() map[string]any {
	m := map[string]any{"kid": k.Kid, "alg": k.Alg, "use": "sig"}
	switch pub := k.Signer.Public().(type) {
	case *ecdsa.PublicKey:
		size := (pub.Curve.Params().BitSize + 7) / 8
		m["kty"] = "EC"
		m["crv"] = pub.Curve.Params().Name
		point, err := pub.Bytes() // 0x04 || X || Y, each size bytes
		if err != nil {
			panic(fmt.Sprintf("jwkstest: %v", err))
		}
		m["x"] = b64.EncodeToString(point[1 : 1+size])
		m["y"] = b64.EncodeToString(point[1+size:])
	case *rsa.PublicKey:
		m["kty"] = "RSA"
		m["n"] = b64.EncodeToString(pub.N.Bytes())
		m["e"] = b64.EncodeToString(big.NewInt(int64(pub.E)).Bytes())
	case ed25519.PublicKey:
		m["kty"] = "OKP"
		m["crv"] = "Ed25519"
		m["x"] = b64.EncodeToString(pub)
	}
	return m
}

// PrivateJWK is the public JWK plus the private parameter d (RSA: d only), for tests that
// check that keys carrying private parts are refused.
func (k *Key) PrivateJWK() map[string]any {
	m := k.PublicJWK()
	switch priv := k.Signer.(type) {
	case *ecdsa.PrivateKey:
		b, _ := priv.Bytes()
		m["d"] = b64.EncodeToString(b)
	case *rsa.PrivateKey:
		m["d"] = b64.EncodeToString(priv.D.Bytes())
	case ed25519.PrivateKey:
		m["d"] = b64.EncodeToString(priv.Seed())
	}
	return m
}

// Set is the JWK Set document {"keys":[...]} of the given JWKs.
func Set(jwks ...map[string]any) []byte {
	if jwks == nil {
		jwks = []map[string]any{}
	}
	b, err := json.Marshal(map[string]any{"keys": jwks})
	if err != nil {
		panic(err)
	}
	return b
}

// PublicSet is the JWK Set of the public keys of keys.
func PublicSet(keys ...*Key) []byte {
	jwks := make([]map[string]any, 0, len(keys))
	for _, k := range keys {
		jwks = append(jwks, k.PublicJWK())
	}
	return Set(jwks...)
}

// Sign signs claims with header {"alg","kid","typ":typ} (typ omitted when empty). claims is
// marshalled with encoding/json unless it is a []byte or json.RawMessage, used as is.
func (k *Key) Sign(claims any, typ string) string {
	h := map[string]any{"alg": k.Alg, "kid": k.Kid}
	if typ != "" {
		h["typ"] = typ
	}
	return k.SignHeader(h, claims)
}

// SignHeader signs claims with the given header (marshalled as is: alg is not forced).
func (k *Key) SignHeader(header map[string]any, claims any) string {
	hb, err := json.Marshal(header)
	if err != nil {
		panic(err)
	}
	return k.SignRaw(hb, raw(claims))
}

// SignRaw signs the exact header and payload bytes with the key's algorithm.
func (k *Key) SignRaw(header, payload []byte) string {
	input := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	sig, err := k.sign([]byte(input))
	if err != nil {
		panic(err)
	}
	return input + "." + b64.EncodeToString(sig)
}

func raw(claims any) []byte {
	switch c := claims.(type) {
	case []byte:
		return c
	case json.RawMessage:
		return c
	}
	b, err := json.Marshal(claims)
	if err != nil {
		panic(err)
	}
	return b
}

func (k *Key) sign(input []byte) ([]byte, error) {
	hash := map[string]crypto.Hash{"256": crypto.SHA256, "384": crypto.SHA384, "512": crypto.SHA512}
	digest := func(h crypto.Hash) []byte {
		switch h {
		case crypto.SHA384:
			d := sha512.Sum384(input)
			return d[:]
		case crypto.SHA512:
			d := sha512.Sum512(input)
			return d[:]
		}
		d := sha256.Sum256(input)
		return d[:]
	}
	switch s := k.Signer.(type) {
	case ed25519.PrivateKey:
		return ed25519.Sign(s, input), nil
	case *ecdsa.PrivateKey:
		h := hash[k.Alg[2:]]
		r, ss, err := ecdsa.Sign(rand.Reader, s, digest(h))
		if err != nil {
			return nil, err
		}
		size := (s.Curve.Params().BitSize + 7) / 8
		// RFC 7518 §3.4: R and S as fixed-size big-endian integers, concatenated (not DER).
		return append(pad(r.Bytes(), size), pad(ss.Bytes(), size)...), nil
	case *rsa.PrivateKey:
		h := hash[k.Alg[2:]]
		if k.Alg[0] == 'P' {
			return rsa.SignPSS(rand.Reader, s, h, digest(h), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return rsa.SignPKCS1v15(rand.Reader, s, h, digest(h))
	}
	return nil, fmt.Errorf("jwkstest: unsupported key type %T", k.Signer)
}

func pad(b []byte, size int) []byte {
	if len(b) >= size {
		return b
	}
	return append(make([]byte, size-len(b)), b...)
}
