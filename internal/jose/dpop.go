package jose

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// DPoPProofType is the typ of a DPoP proof JWT (RFC 9449 §4.2).
const DPoPProofType = "dpop+jwt"

// MaxDPoPProofBytes bounds a DPoP header: a proof carries one public key and a few short
// claims, so anything larger is refused before it is decoded.
const MaxDPoPProofBytes = 8192

// ErrInvalidDPoPProof is wrapped by every error of VerifyDPoPProof (RFC 9449 §7.1
// invalid_dpop_proof).
var ErrInvalidDPoPProof = errors.New("jose: invalid DPoP proof")

// The checks of a DPoP proof, as DPoPError.Check names them. They are fixed words, safe as a
// metrics label and in logs: they never carry any part of the proof.
const (
	DPoPCheckMalformed = "malformed" // size, segments, base64url, JSON, claim types
	DPoPCheckTyp       = "typ"       // typ is not dpop+jwt (RFC 9449 §4.3 step 4)
	DPoPCheckAlg       = "alg"       // none, HMAC, unknown or not allow-listed (step 5)
	DPoPCheckJWK       = "jwk"       // missing, private, unsupported or not fitting alg (step 7)
	DPoPCheckSignature = "signature" // does not verify with the jwk (step 6)
	DPoPCheckHTM       = "htm"       // not the request method (step 8)
	DPoPCheckHTU       = "htu"       // not the request URL (step 9)
	DPoPCheckIAT       = "iat"       // missing or outside the window (step 11)
	DPoPCheckATH       = "ath"       // not the hash of the access token (step 12)
	DPoPCheckJTI       = "jti"       // missing or empty (step 10; replay is the caller's)
	// DPoPCheckJKT: the jwk is not the key DPoPParams.JKT names (RFC 9449 §6.1). The caller
	// answers it with invalid_token, not invalid_dpop_proof: the key is the token's problem
	// (RFC 9449 §7.1).
	DPoPCheckJKT = "jkt"
)

// DPoPError is a refused DPoP proof; Check is one of the DPoPCheck* words.
type DPoPError struct{ Check string }

func (e *DPoPError) Error() string { return ErrInvalidDPoPProof.Error() + ": " + e.Check }
func (e *DPoPError) Unwrap() error { return ErrInvalidDPoPProof }

func dpopFail(check string) error { return &DPoPError{Check: check} }

// DPoPParams is what a proof must match.
type DPoPParams struct {
	Method      string // the request method, compared exactly (RFC 9110 §9.1: case-sensitive)
	URL         string // the request URL; its query and fragment are ignored
	AccessToken string // the access token the proof is presented with (ath)
	// AccessTokenSum, when not zero, is the SHA-256 of AccessToken, which ath is compared with
	// instead of hashing the token again: the verifier already hashed it (its cache key).
	AccessTokenSum [sha256.Size]byte
	Algorithms     []string // the allow-list; only asymmetric algorithms can ever pass
	Now            time.Time
	// Window is how far iat may be from Now, either way (RFC 9449 §11.1: a short window
	// bounds the replay cache).
	Window time.Duration
	// JKT, when set, is the thumbprint the proof's jwk must have: the token's cnf.jkt
	// (RFC 9449 §6.1). It is compared before the signature is verified, so a proof naming
	// another key costs a hash, not a signature verification.
	JKT string
}

// DPoPProof is a proof that passed every check of VerifyDPoPProof.
type DPoPProof struct {
	JKT      string // the RFC 7638 SHA-256 thumbprint of the proof's jwk, base64url
	ID       string // jti
	IssuedAt time.Time
}

// dpopForbiddenHeaders are forbiddenHeaders less jwk, which a proof must carry (RFC 9449 §4.2).
var dpopForbiddenHeaders = slices.DeleteFunc(slices.Clone(forbiddenHeaders), func(s string) bool { return s == "jwk" })

// VerifyDPoPProof checks a DPoP proof JWT against the request (RFC 9449 §4.3): its size and
// compact form (one canonical base64url spelling, strict JSON as Parse demands), typ dpop+jwt,
// an asymmetric alg of the allow-list, a public jwk of a supported type that fits the alg (a
// private member refuses it: RFC 9449 §4.2 "MUST NOT contain a private key"), the signature
// with that jwk (through jwx, as Verify), then htm, htu (RFC 9449 §4.3 step 9 with the
// normalisation of NormalizeHTU), iat within Window of Now, ath and a non-empty jti. Whether
// the jti was seen before is the caller's check; whether the jwk is the token's cnf.jkt is
// checked when p.JKT is set (before the signature), else it is the caller's.
// Every error is a *DPoPError wrapping ErrInvalidDPoPProof.
func VerifyDPoPProof(proof string, p DPoPParams) (*DPoPProof, error) {
	if len(proof) == 0 || len(proof) > MaxDPoPProofBytes {
		return nil, dpopFail(DPoPCheckMalformed)
	}
	hSeg, pSeg, sSeg, ok := splitCompact(proof)
	if !ok {
		return nil, dpopFail(DPoPCheckMalformed)
	}
	enc := base64.RawURLEncoding.Strict()
	hdrBytes, err1 := enc.DecodeString(hSeg)
	payload, err2 := enc.DecodeString(pSeg)
	sig, err3 := enc.DecodeString(sSeg)
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, dpopFail(DPoPCheckMalformed)
	}
	hdr, reason := decodeStrictObject(hdrBytes)
	if reason != "" {
		return nil, dpopFail(DPoPCheckMalformed)
	}
	alg, key, err := dpopHeader(hdr, p.Algorithms)
	if err != nil {
		return nil, err
	}
	// The thumbprint hashes the public key's members only (RFC 7638 §3), cheap beside a
	// signature verification: a proof by a key that is not the token's is refused before one.
	jkt, err := thumbprintOf(key.pub)
	if err != nil {
		return nil, dpopFail(DPoPCheckJWK)
	}
	if p.JKT != "" && jkt != p.JKT {
		return nil, dpopFail(DPoPCheckJKT)
	}
	if n, ok := fixedSigLen[alg]; ok && len(sig) != n {
		return nil, dpopFail(DPoPCheckSignature)
	}
	verifier, err := jws.NewVerifier(jwa.SignatureAlgorithm(alg))
	if err != nil {
		return nil, dpopFail(DPoPCheckAlg)
	}
	// The JWS Signing Input is the proof's own bytes up to the second dot (RFC 7515 §5.2).
	if err := verifier.Verify([]byte(proof[:len(hSeg)+1+len(pSeg)]), sig, key.pub); err != nil {
		return nil, dpopFail(DPoPCheckSignature)
	}
	claims, reason := decodeStrictObject(payload)
	if reason != "" {
		return nil, dpopFail(DPoPCheckMalformed)
	}
	out, err := dpopClaims(claims, p)
	if err != nil {
		return nil, err
	}
	out.JKT = jkt
	return out, nil
}

// splitCompact finds the three segments of a compact JWS without splitting, each non-empty
// base64url (the signature of a proof is never empty: alg none is refused).
func splitCompact(s string) (h, p, sig string, ok bool) {
	d1 := strings.IndexByte(s, '.')
	if d1 < 0 {
		return "", "", "", false
	}
	rest := s[d1+1:]
	d2 := strings.IndexByte(rest, '.')
	if d2 < 0 || strings.IndexByte(rest[d2+1:], '.') >= 0 {
		return "", "", "", false
	}
	h, p, sig = s[:d1], rest[:d2], rest[d2+1:]
	return h, p, sig, isBase64URL(h) && isBase64URL(p) && isBase64URL(sig)
}

// dpopHeader checks the proof's protected header and returns its alg and jwk.
func dpopHeader(hdr map[string]any, allowed []string) (string, verifyKey, error) {
	for name := range hdr {
		if slices.Contains(dpopForbiddenHeaders, name) {
			// crit: no extension is understood (RFC 7515 §4.1.11); the key comes from jwk
			// alone, never a URL or certificate chain (RFC 9449 §4.2).
			return "", verifyKey{}, dpopFail(DPoPCheckMalformed)
		}
	}
	// RFC 7515 §4.1.9: typ is case-insensitive, and "application/" may be omitted.
	typ, _ := hdr["typ"].(string)
	if !strings.EqualFold(strings.TrimPrefix(strings.ToLower(typ), "application/"), DPoPProofType) {
		return "", verifyKey{}, dpopFail(DPoPCheckTyp)
	}
	alg, _ := hdr["alg"].(string)
	if _, known := verifyAlgs[alg]; !known || !slices.Contains(allowed, alg) {
		// none and HS* are never in verifyAlgs (RFC 9449 §4.3 step 5, RFC 8725 §3.1).
		return "", verifyKey{}, dpopFail(DPoPCheckAlg)
	}
	obj, isObj := hdr["jwk"].(map[string]any)
	if !isObj {
		return "", verifyKey{}, dpopFail(DPoPCheckJWK)
	}
	raw, err := json.Marshal(obj) // numbers are json.Number: the members are kept as sent
	if err != nil {
		return "", verifyKey{}, dpopFail(DPoPCheckJWK)
	}
	key, reason := parseVerifyKey(raw)
	if reason != "" || !key.fits(alg) {
		return "", verifyKey{}, dpopFail(DPoPCheckJWK)
	}
	return alg, key, nil
}

// dpopClaims checks the proof's claims against the request (RFC 9449 §4.3 steps 8-12).
func dpopClaims(c map[string]any, p DPoPParams) (*DPoPProof, error) {
	jti, _ := c["jti"].(string)
	if jti == "" {
		return nil, dpopFail(DPoPCheckJTI)
	}
	if htm, _ := c["htm"].(string); htm == "" || htm != p.Method {
		return nil, dpopFail(DPoPCheckHTM)
	}
	htu, _ := c["htu"].(string)
	got, ok1 := NormalizeHTU(htu)
	want, ok2 := NormalizeHTU(p.URL)
	if !ok1 || !ok2 || got != want {
		return nil, dpopFail(DPoPCheckHTU)
	}
	v, present := c["iat"]
	if !present {
		return nil, dpopFail(DPoPCheckIAT)
	}
	iat, reason := numericDate(v)
	if reason != "" || !ValidTime(true, iat) {
		return nil, dpopFail(DPoPCheckIAT)
	}
	if d := p.Now.Sub(iat); d > p.Window || d < -p.Window {
		return nil, dpopFail(DPoPCheckIAT)
	}
	ath, _ := c["ath"].(string)
	sum := p.AccessTokenSum
	if sum == ([sha256.Size]byte{}) {
		sum = sha256.Sum256([]byte(p.AccessToken))
	}
	if ath == "" || ath != base64.RawURLEncoding.EncodeToString(sum[:]) {
		return nil, dpopFail(DPoPCheckATH)
	}
	return &DPoPProof{ID: strings.Clone(jti), IssuedAt: iat}, nil
}

// AccessTokenHash is the ath of a proof for token: base64url(SHA-256(token)) (RFC 9449 §4.2).
func AccessTokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// thumbprintOf is the RFC 7638 SHA-256 thumbprint of a public key, base64url: jwx hashes the
// required members in lexicographic order without whitespace (RFC 7638 §3.2-3.3).
func thumbprintOf(pub any) (string, error) {
	k, err := jwk.FromRaw(pub)
	if err != nil {
		return "", err
	}
	sum, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// JWKThumbprint returns the RFC 7638 SHA-256 thumbprint (base64url) of a public JWK of a
// supported type (RSA of at least 2048 bits, EC P-256/384/521, Ed25519), the value of a
// token's cnf.jkt (RFC 9449 §6.1).
func JWKThumbprint(raw []byte) (string, error) {
	key, reason := parseVerifyKey(raw)
	if reason != "" {
		return "", fail(ErrMalformed, "unusable JWK")
	}
	tp, err := thumbprintOf(key.pub)
	if err != nil {
		return "", fail(ErrMalformed, "unusable JWK")
	}
	return tp, nil
}

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of k's public key (a cnf.jkt value).
func (k *SigningKey) Thumbprint() (string, error) {
	if k == nil || k.priv == nil {
		return "", errors.New("jose: thumbprint: nil key")
	}
	return thumbprintOf(k.priv.Public())
}

// PublicJWK returns k's public key as a JWK object (RFC 7517 §4), without kid, alg or use:
// the jwk of k's DPoP proofs.
func (k *SigningKey) PublicJWK() (map[string]any, error) {
	if k == nil || k.priv == nil {
		return nil, errors.New("jose: public JWK: nil key")
	}
	pub, err := jwk.PublicKeyOf(k.priv.Public())
	if err != nil {
		return nil, errors.New("jose: public JWK: cannot convert key")
	}
	b, err := json.Marshal(pub)
	if err != nil {
		return nil, errors.New("jose: public JWK: cannot marshal")
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, errors.New("jose: public JWK: cannot marshal")
	}
	return m, nil
}

// SignDPoPProof signs claims as a DPoP proof (RFC 9449 §4.2) whose protected header holds typ
// dpop+jwt, k's alg and k's public key as jwk. header adds or replaces header members, and a
// nil value removes one (tests build refused proofs with it). It is for clients and tests:
// tokengate itself never presents proofs.
func (k *SigningKey) SignDPoPProof(claims map[string]any, header map[string]any) (string, error) {
	pub, err := k.PublicJWK()
	if err != nil {
		return "", err
	}
	hdr := map[string]any{"typ": DPoPProofType, "alg": k.alg, "jwk": pub}
	for name, v := range header {
		if v == nil {
			delete(hdr, name)
		} else {
			hdr[name] = v
		}
	}
	h, err := json.Marshal(hdr)
	if err != nil {
		return "", errors.New("jose: sign: header is not JSON-encodable")
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", errors.New("jose: sign: claims are not JSON-encodable")
	}
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(payload)
	signer, err := jws.NewSigner(jwa.SignatureAlgorithm(k.alg))
	if err != nil {
		return "", errors.New("jose: sign: no signer")
	}
	sig, err := signer.Sign([]byte(input), k.priv)
	if err != nil {
		return "", errors.New("jose: sign: cannot sign")
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// CertificateThumbprint returns the x5t#S256 of a client certificate (RFC 8705 §3.1):
// base64url(SHA-256(DER)). pemText is one PEM CERTIFICATE block (already URL-decoded); a
// block that is not a certificate x509 parses is an error.
func CertificateThumbprint(pemText string) (string, error) {
	block, _ := pem.Decode([]byte(pemText))
	if block == nil || block.Type != "CERTIFICATE" {
		return "", fail(ErrMalformed, "not a PEM certificate")
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return "", fail(ErrMalformed, "certificate does not parse")
	}
	sum := sha256.Sum256(block.Bytes)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// NormalizeHTU returns an http(s) URL in the form RFC 9449 §4.3 compares htu in: without query
// and fragment, after the syntax-based and scheme-based normalisation of RFC 3986 §6.2.2-6.2.3
// (scheme and host in lower case, percent-encodings in upper case and decoded when they encode
// an unreserved character, dot segments removed, the scheme's default port dropped, an empty
// path as "/"). ok is false for anything but an absolute http or https URL with a host and
// without userinfo.
func NormalizeHTU(raw string) (string, bool) {
	if len(raw) > MaxDPoPProofBytes {
		return "", false
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] <= 0x20 || raw[i] >= 0x7f {
			return "", false
		}
	}
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "", false
	}
	scheme = strings.ToLower(scheme)
	if scheme != "http" && scheme != "https" {
		return "", false
	}
	authority, path := rest, "/"
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	if authority == "" || strings.IndexByte(authority, '@') >= 0 {
		return "", false
	}
	host, port := authority, ""
	if i := strings.LastIndexByte(authority, ':'); i >= 0 && i > strings.LastIndexByte(authority, ']') {
		host, port = authority[:i], authority[i+1:]
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return "", false
		}
	}
	port = strings.TrimLeft(port, "0")
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	host = strings.ToLower(host)
	if host == "" {
		return "", false
	}
	path, ok = normalizePercent(path)
	if !ok {
		return "", false
	}
	authority = host
	if port != "" {
		authority += ":" + port
	}
	return scheme + "://" + authority + removeDotSegments(path), true
}

// normalizePercent upper-cases percent-encodings and decodes those of unreserved characters
// (RFC 3986 §6.2.2.1-6.2.2.2); a malformed one is an error.
func normalizePercent(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) || unhex(s[i+1]) < 0 || unhex(s[i+2]) < 0 {
			return "", false
		}
		c := byte(unhex(s[i+1])<<4 | unhex(s[i+2]))
		if isUnreserved(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteString(strings.ToUpper(s[i+1 : i+3]))
		}
		i += 2
	}
	return b.String(), true
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// isUnreserved: RFC 3986 §2.3.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// removeDotSegments is RFC 3986 §5.2.4 for an absolute path.
func removeDotSegments(in string) string {
	var out []string
	segs := strings.Split(in, "/")[1:] // in starts with "/"
	for i, seg := range segs {
		last := i == len(segs)-1
		switch seg {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, seg)
		}
	}
	return "/" + strings.Join(out, "/")
}
