package jose

import "slices"

// Key types as named by RFC 7518 §6.1 and RFC 8037 §2.
const (
	ktyRSA = "RSA"
	ktyEC  = "EC"
	ktyOKP = "OKP"
)

// algInfo describes one asymmetric JWS algorithm (RFC 7518 §3.1, RFC 8037 §3.1).
type algInfo struct {
	kty string
	crv string // EC curve (RFC 7518 §3.4) or OKP subtype; empty for RSA
}

// verifyAlgs are the only JWS algorithms this package will ever verify. HMAC
// ("HS*") and "none" are deliberately absent: a verifier holding public keys
// must never accept them (RFC 8725 §2.1, §3.1; CVE-2015-9235 and relatives).
var verifyAlgs = map[string]algInfo{
	"RS256": {kty: ktyRSA},
	"RS384": {kty: ktyRSA},
	"RS512": {kty: ktyRSA},
	"PS256": {kty: ktyRSA},
	"PS384": {kty: ktyRSA},
	"PS512": {kty: ktyRSA},
	"ES256": {kty: ktyEC, crv: "P-256"},
	"ES384": {kty: ktyEC, crv: "P-384"},
	"ES512": {kty: ktyEC, crv: "P-521"},
	"EdDSA": {kty: ktyOKP, crv: "Ed25519"},
}

// signAlgs are the algorithms SigningKey supports (SPEC §3 issuer.signing_keys).
var signAlgs = []string{"ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "EdDSA"}

// SigningAlgorithms returns the algorithms GenerateKey and LoadSigningKey accept.
func SigningAlgorithms() []string { return slices.Clone(signAlgs) }

// VerificationAlgorithms returns every algorithm Verify can ever accept; a
// provider's allow-list should be a subset of it.
func VerificationAlgorithms() []string {
	return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
}

// IsSigningAlgorithm reports whether alg can be used by a SigningKey.
func IsSigningAlgorithm(alg string) bool { return slices.Contains(signAlgs, alg) }

// IsVerificationAlgorithm reports whether alg can ever be verified by this package.
func IsVerificationAlgorithm(alg string) bool { _, ok := verifyAlgs[alg]; return ok }

// minRSABits is the smallest RSA modulus accepted anywhere (RFC 7518 §3.3).
const minRSABits = 2048
