package jose

import (
	"slices"
	"strings"
)

// Key types as named by RFC 7518 §6.1 and RFC 8037 §2.
const (
	ktyRSA = "RSA"
	ktyEC  = "EC"
	ktyOKP = "OKP"
)

// algInfo describes one asymmetric JWS algorithm (RFC 7518 §3.1, RFC 8037 §3.1).
type algInfo struct {
	kty  string
	crv  string // EC curve (RFC 7518 §3.4) or OKP subtype; empty for RSA
	sign bool   // the issuer can sign with it (issuer.signing_keys[].alg)
	def  bool   // in the allow-list of a provider that names none (providers[].algorithms)
}

// verifyAlgs are the only JWS algorithms this package will ever verify, and so the only ones
// a provider may allow-list. HMAC ("HS*") and "none" are deliberately absent: a verifier
// holding public keys must never accept them (RFC 8725 §2.1, §3.1; CVE-2015-9235 and
// relatives). ES512, PS384 and PS512 are verified but not signed with (no need to mint them).
var verifyAlgs = map[string]algInfo{
	"RS256": {kty: ktyRSA, sign: true, def: true},
	"RS384": {kty: ktyRSA, sign: true},
	"RS512": {kty: ktyRSA, sign: true},
	"PS256": {kty: ktyRSA, sign: true, def: true},
	"PS384": {kty: ktyRSA},
	"PS512": {kty: ktyRSA},
	"ES256": {kty: ktyEC, crv: "P-256", sign: true, def: true},
	"ES384": {kty: ktyEC, crv: "P-384", sign: true},
	"ES512": {kty: ktyEC, crv: "P-521"},
	"EdDSA": {kty: ktyOKP, crv: "Ed25519", sign: true, def: true},
}

// Orders in which the lists are shown (messages, help texts, the default allow-list); the
// membership is verifyAlgs' alone.
var (
	signOrder    = []string{"ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "EdDSA"}
	verifyOrder  = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
	defaultOrder = []string{"RS256", "ES256", "PS256", "EdDSA"}
)

// SigningAlgorithms returns the algorithms the issuer signs with: those GenerateKey and
// LoadSigningKey accept (issuer.signing_keys[].alg, `tokengate keygen --alg`).
func SigningAlgorithms() []string { return slices.Clone(signOrder) }

// SigningAlgorithmList is SigningAlgorithms as text ("ES256, ES384, ...") for messages and help.
func SigningAlgorithmList() string { return strings.Join(signOrder, ", ") }

// VerificationAlgorithms returns every algorithm Verify can ever accept: the algorithms a
// provider may allow-list (providers[].algorithms).
func VerificationAlgorithms() []string { return slices.Clone(verifyOrder) }

// DefaultAlgorithms returns the allow-list of a provider that names none: one RSA PKCS#1,
// one RSA-PSS, one ECDSA and one EdDSA algorithm, the common choices of IdPs.
func DefaultAlgorithms() []string { return slices.Clone(defaultOrder) }

// IsSigningAlgorithm reports whether alg can be used by a SigningKey.
func IsSigningAlgorithm(alg string) bool { return verifyAlgs[alg].sign }

// IsVerificationAlgorithm reports whether alg can ever be verified by this package.
func IsVerificationAlgorithm(alg string) bool { _, ok := verifyAlgs[alg]; return ok }

// minRSABits is the smallest RSA modulus accepted anywhere (RFC 7518 §3.3).
const minRSABits = 2048

// maxRSABits is the largest RSA modulus accepted for verification, in a JWKS and in a DPoP
// proof's jwk alike (docs/security.md#jose-hardening). A verification costs about the square of
// the modulus' size, and a DPoP proof's key is the caller's choice: without a ceiling an 8 KiB
// proof carries a 20,000-bit modulus. 8192 is Go's own ceiling for the keys of a TLS peer's
// certificates (crypto/tls, CVE-2023-29409) and above what any cloud KMS or HSM issues (4096), so
// no IdP's JWKS key is refused by it.
const maxRSABits = 8192
