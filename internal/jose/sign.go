package jose

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// SigningKey is a private key bound to one JWS algorithm and one kid. It is
// immutable after construction and safe for concurrent use.
type SigningKey struct {
	alg  string
	kid  string
	priv crypto.Signer // *rsa.PrivateKey, *ecdsa.PrivateKey or ed25519.PrivateKey
}

// rsaGenerateBits is the modulus size of generated RSA keys: the minimum of
// RFC 7518 §3.3, which keeps tests and ephemeral development keys fast.
const rsaGenerateBits = 2048

// GenerateKey creates a fresh key for alg (ES256, ES384, RS256, RS384, RS512,
// PS256, EdDSA) named kid. Intended for `keygen` and for ephemeral
// development keys (`generate: true`).
func GenerateKey(alg, kid string) (*SigningKey, error) {
	if !IsSigningAlgorithm(alg) {
		return nil, errors.New("jose: unsupported signing algorithm")
	}
	if !validKeyID(kid) {
		return nil, errors.New("jose: kid must be 1-256 printable ASCII characters")
	}
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default: // RS*, PS*
		priv, err = rsa.GenerateKey(rand.Reader, rsaGenerateBits)
	}
	if err != nil {
		return nil, fmt.Errorf("jose: generate key: %w", err)
	}
	return newSigningKey(priv, alg, kid)
}

// LoadSigningKey reads a private key from PEM (PKCS#8 "PRIVATE KEY", PKCS#1
// "RSA PRIVATE KEY" or SEC1 "EC PRIVATE KEY", an optional "EC PARAMETERS"
// block is skipped) or from a private JWK (RFC 7517 JSON object). The key type
// must fit alg (RSA for RS*/PS*, P-256 for ES256, P-384 for ES384, Ed25519 for
// EdDSA); RSA keys must have at least 2048 bits (RFC 7518 §3.3).
//
// For a JWK, an empty alg or kid argument is taken from the JWK's own "alg" /
// "kid"; when both are given they must agree. Encrypted PEM is not supported.
// Error texts never contain key material.
func LoadSigningKey(data []byte, alg, kid string) (*SigningKey, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("jose: signing key: empty input")
	}
	var (
		priv crypto.Signer
		err  error
	)
	if trimmed[0] == '{' {
		priv, alg, kid, err = loadJWK(trimmed, alg, kid)
	} else {
		priv, err = loadPEM(trimmed)
	}
	if err != nil {
		return nil, err
	}
	if !IsSigningAlgorithm(alg) {
		return nil, errors.New("jose: signing key: unsupported signing algorithm")
	}
	if !validKeyID(kid) {
		return nil, errors.New("jose: signing key: kid must be 1-256 printable ASCII characters")
	}
	return newSigningKey(priv, alg, kid)
}

func loadPEM(data []byte) (crypto.Signer, error) {
	var found any
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if len(block.Headers) != 0 {
			return nil, errors.New("jose: signing key: encrypted or annotated PEM is not supported")
		}
		var (
			k   any
			err error
		)
		switch block.Type {
		case "EC PARAMETERS": // written by `openssl ecparam -genkey`; the key block repeats the curve
			continue
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("jose: signing key: encrypted PEM is not supported")
		default:
			return nil, errors.New("jose: signing key: unexpected PEM block type (want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")
		}
		if err != nil {
			return nil, fmt.Errorf("jose: signing key: cannot parse %s block: %w", block.Type, err)
		}
		if found != nil {
			return nil, errors.New("jose: signing key: more than one private key in PEM")
		}
		found = k
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("jose: signing key: data is neither PEM nor a JWK")
	}
	if found == nil {
		return nil, errors.New("jose: signing key: no private key found in PEM")
	}
	s, ok := found.(crypto.Signer)
	if !ok {
		return nil, errors.New("jose: signing key: unsupported private key type")
	}
	return s, nil
}

func loadJWK(data []byte, alg, kid string) (crypto.Signer, string, string, error) {
	obj, reason := decodeStrictObject(data)
	if reason != "" {
		return nil, "", "", errors.New("jose: signing key: JWK is not a valid JSON object: " + reason)
	}
	if kty, _ := obj["kty"].(string); kty != ktyRSA && kty != ktyEC && kty != ktyOKP {
		return nil, "", "", errors.New("jose: signing key: JWK kty must be RSA, EC or OKP")
	}
	if use, present := obj["use"]; present && use != "sig" {
		return nil, "", "", errors.New(`jose: signing key: JWK "use" is not "sig"`)
	}
	for _, name := range []string{"alg", "kid"} {
		if v, present := obj[name]; present {
			if _, ok := v.(string); !ok {
				return nil, "", "", fmt.Errorf("jose: signing key: JWK %q is not a string", name)
			}
		}
	}
	key, err := jwk.ParseKey(data)
	if err != nil {
		return nil, "", "", errors.New("jose: signing key: invalid JWK")
	}
	if isPriv, err := jwk.IsPrivateKey(key); err != nil || !isPriv {
		return nil, "", "", errors.New("jose: signing key: JWK is not a private key")
	}
	if jalg := key.Algorithm().String(); jalg != "" {
		if alg == "" {
			alg = jalg
		} else if alg != jalg {
			return nil, "", "", errors.New(`jose: signing key: JWK "alg" differs from the configured alg`)
		}
	}
	if jkid := key.KeyID(); jkid != "" {
		if kid == "" {
			kid = jkid
		} else if kid != jkid {
			return nil, "", "", errors.New(`jose: signing key: JWK "kid" differs from the configured kid`)
		}
	}
	var raw any
	if err := key.Raw(&raw); err != nil {
		return nil, "", "", errors.New("jose: signing key: invalid JWK")
	}
	s, ok := raw.(crypto.Signer)
	if !ok {
		return nil, "", "", errors.New("jose: signing key: unsupported JWK key type")
	}
	return s, alg, kid, nil
}

// newSigningKey checks that priv fits alg and is internally consistent.
func newSigningKey(priv crypto.Signer, alg, kid string) (*SigningKey, error) {
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		if verifyAlgs[alg].kty != ktyRSA {
			return nil, errors.New("jose: signing key: an RSA key cannot be used for " + alg)
		}
		if k.N.BitLen() < minRSABits {
			return nil, errors.New("jose: signing key: RSA key shorter than 2048 bits")
		}
		if err := k.Validate(); err != nil {
			return nil, errors.New("jose: signing key: inconsistent RSA key")
		}
		k.Precompute()
	case *ecdsa.PrivateKey:
		want := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384()}[alg]
		if want == nil || k.Curve != want {
			return nil, errors.New("jose: signing key: EC key curve does not fit " + alg)
		}
		// The public point must be on the curve and belong to D (a JWK
		// carries both "d" and "x"/"y", which could disagree).
		ecdhPriv, err := k.ECDH()
		if err != nil {
			return nil, errors.New("jose: signing key: invalid EC private key")
		}
		ecdhPub, err := k.PublicKey.ECDH()
		if err != nil || !ecdhPriv.PublicKey().Equal(ecdhPub) {
			return nil, errors.New("jose: signing key: EC public point does not match the private key")
		}
	case ed25519.PrivateKey:
		if alg != "EdDSA" {
			return nil, errors.New("jose: signing key: an Ed25519 key cannot be used for " + alg)
		}
		if len(k) != ed25519.PrivateKeySize || !bytes.Equal(ed25519.NewKeyFromSeed(k.Seed()), k) {
			return nil, errors.New("jose: signing key: invalid Ed25519 private key")
		}
	default:
		return nil, errors.New("jose: signing key: unsupported key type")
	}
	return &SigningKey{alg: alg, kid: kid, priv: priv}, nil
}

// KeyID returns the kid placed in every token header and in the published JWK.
func (k *SigningKey) KeyID() string { return k.kid }

// Algorithm returns the JWS alg this key signs with.
func (k *SigningKey) Algorithm() string { return k.alg }

// MarshalPEM returns the private key as PKCS#8 (RFC 5208) in a "PRIVATE KEY"
// PEM block, the format `keygen` writes (docs/operations.md#commands).
func (k *SigningKey) MarshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		return nil, fmt.Errorf("jose: marshal PKCS#8: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Sign serialises claims as the JWT Claims Set and returns a compact JWS
// (RFC 7515 §7.1) whose protected header holds alg, kid and, when typ is not
// empty, typ (e.g. "at+jwt", RFC 9068 §2.1). Claims must be JSON-encodable;
// a float NaN or a channel is an error.
func (k *SigningKey) Sign(claims map[string]any, typ string) (string, error) {
	if k == nil || k.priv == nil {
		return "", errors.New("jose: sign: nil key")
	}
	if typ != "" && !validKeyID(typ) { // same printable-ASCII rule
		return "", errors.New("jose: sign: typ must be printable ASCII")
	}
	if claims == nil {
		claims = map[string]any{}
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", errors.New("jose: sign: claims are not JSON-encodable")
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.KeyIDKey, k.kid); err != nil {
		return "", errors.New("jose: sign: cannot set kid")
	}
	if typ != "" {
		if err := hdr.Set(jws.TypeKey, typ); err != nil {
			return "", errors.New("jose: sign: cannot set typ")
		}
	}
	out, err := jws.Sign(payload, jws.WithKey(jwa.SignatureAlgorithm(k.alg), k.priv, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("jose: sign: %w", err)
	}
	return string(out), nil
}

// PublicJWKS returns a JWK Set (RFC 7517 §5) with the public part of every
// key, each carrying kid, alg and use "sig" so that verifiers (ours included)
// can bind the header alg to the key (RFC 8725 §3.1). Kids must be unique.
func PublicJWKS(keys []*SigningKey) ([]byte, error) {
	set := jwk.NewSet()
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if k == nil || k.priv == nil {
			return nil, errors.New("jose: public JWKS: nil key")
		}
		if seen[k.kid] {
			return nil, errors.New("jose: public JWKS: duplicate kid")
		}
		seen[k.kid] = true
		pub, err := k.publicJWK()
		if err != nil {
			return nil, err
		}
		if err := set.AddKey(pub); err != nil {
			return nil, errors.New("jose: public JWKS: cannot add key")
		}
	}
	out, err := json.Marshal(set)
	if err != nil {
		return nil, errors.New("jose: public JWKS: cannot marshal")
	}
	return out, nil
}

func (k *SigningKey) publicJWK() (jwk.Key, error) {
	pub, err := jwk.PublicKeyOf(k.priv.Public())
	if err != nil {
		return nil, errors.New("jose: public JWK: cannot convert key")
	}
	for name, v := range map[string]any{
		jwk.KeyIDKey:     k.kid,
		jwk.AlgorithmKey: jwa.SignatureAlgorithm(k.alg),
		jwk.KeyUsageKey:  jwk.ForSignature,
	} {
		if err := pub.Set(name, v); err != nil {
			return nil, errors.New("jose: public JWK: cannot set " + name)
		}
	}
	return pub, nil
}
