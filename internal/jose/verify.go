package jose

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/tokengate/tokengate/internal/defaults"
)

// forbiddenHeaders are protected-header parameters whose presence rejects a
// token before any key lookup (ErrForbiddenHeader):
//   - crit (RFC 7515 §4.1.11): we understand no extension, and jwx v2 does not
//     enforce it (docs/security.md#jose-hardening; PyJWT CVE-2026-32597);
//   - b64 (RFC 7797): unencoded payloads change what is signed;
//   - zip, enc and the other JWE parameters (RFC 7516 §4.1, §9): a JWS never
//     carries them; CVE-2022-39227 mixed the two;
//   - jwk, jku, x5u, x5c (RFC 7515 §4.1.2–4.1.6; RFC 8725 §3.10): keys or key
//     URLs chosen by the token's author (CVE-2018-0114, SSRF).
//
// x5t and x5t#S256 (certificate thumbprints, RFC 7515 §4.1.7–4.1.8) are NOT
// in this list: Microsoft Entra ID and AD FS put x5t in every token next to
// kid, and a thumbprint can neither supply nor locate a key here (keys are
// selected by kid only, jwx receives exactly one key). They must still be
// base64url strings; see checkHeader.
var forbiddenHeaders = []string{
	"crit", "b64", "zip", "enc", "jwk", "jku", "x5u", "x5c",
	"epk", "apu", "apv", "iv", "tag", "p2s", "p2c",
}

// thumbprintHeaders are tolerated but never used.
var thumbprintHeaders = []string{"x5t", "x5t#S256"}

// Unverified is a compact JWS that passed every structural check of Parse but
// whose signature has NOT been verified. Nothing it returns may be trusted
// except for routing (Issuer) and key selection (KeyID, Algorithm).
type Unverified struct {
	// input is the JWS Signing Input, ASCII(BASE64URL(header) || '.' ||
	// BASE64URL(payload)) (RFC 7515 §5.2 step 8): the token's own bytes up to
	// the second dot, which Parse admits only in the one canonical spelling.
	input  []byte
	sig    []byte // the decoded signature
	alg    string
	kid    string
	hasKid bool
	typ    string
	parsed bool
	claims Claims
}

// Claims is the decoded JWT Claims Set (RFC 7519 §4) with the registered
// claims typed. It is returned only by a successful Verify.
type Claims struct {
	Issuer, Subject, ID string
	// Audience holds "aud" as a string or array of strings (RFC 7519 §4.1.3);
	// any other JSON type makes the token malformed. [] and "" are kept
	// ([] / [""]) for the caller to reject.
	Audience []string
	// Expiry, NotBefore and IssuedAt hold exp/nbf/iat (RFC 7519 §2
	// NumericDate, seconds with an optional fraction). The zero time.Time
	// means absent; see the Has* fields. A value <= 0 (e.g. "exp":0 or -1)
	// is kept as that instant (at or before 1970-01-01T00:00:00Z) with Has*
	// true, so that callers can reject it: jwx treats exp:0 as absent
	// (docs/security.md#jose-hardening). Use ValidTime to test a NumericDate.
	Expiry, NotBefore, IssuedAt          time.Time
	HasExpiry, HasNotBefore, HasIssuedAt bool
	// Raw holds every claim; numbers are json.Number. Its strings share the
	// memory of the token's decoded payload: a caller keeping one beyond the
	// request should copy it (strings.Clone).
	Raw map[string]any
}

// ValidTime reports whether a NumericDate read into Claims is present and
// strictly after the Unix epoch, the only values a verifier should accept
// for exp (and, when present, for nbf and iat).
func ValidTime(present bool, t time.Time) bool {
	return present && t.After(time.Unix(0, 0))
}

// maxNumericDate is 2^53: beyond it float64 stops being exact and other
// parsers (JavaScript, int64 readers with 2^63) disagree about the value.
const maxNumericDate = 1 << 53

// Parse performs every check that needs no key, in an order that keeps work
// bounded for hostile input: the length cap and the dot count come before any
// split or decode (jwx v2 splits with bytes.Split, the CVE-2025-30204 class),
// each segment must be canonical unpadded base64url (jwx would accept several
// spellings of one token), the header and payload must be valid UTF-8 JSON
// objects without duplicate member names and within a depth bound
// (RFC 8725 §3.7; parser differentials), the header alg must be an asymmetric
// JWS algorithm (never none or HS*, RFC 8725 §3.1), kid a short printable-ASCII
// string, and no forbidden header parameter may appear (forbiddenHeaders: jwx
// v2 enforces none of them). The registered claims are type-checked here too,
// so that Issuer can route the token before any key lookup. JSON serialization
// (RFC 7515 §7.2) is not a compact token and fails the dot count (jwx v2 would
// accept it). Each of these jwx gaps is listed in
// docs/security.md#jose-hardening.
//
// maxBytes <= 0 means defaults.MaxTokenBytes.
func Parse(token string, maxBytes int) (*Unverified, error) {
	if maxBytes <= 0 {
		maxBytes = defaults.MaxTokenBytes
	}
	if len(token) == 0 {
		return nil, fail(ErrMalformed, "empty token")
	}
	if len(token) > maxBytes {
		return nil, fail(ErrMalformed, "token too large")
	}
	// Exactly two dots, found without splitting (no allocation).
	d1 := strings.IndexByte(token, '.')
	if d1 < 0 {
		return nil, fail(ErrMalformed, "not three dot-separated segments")
	}
	d2 := d1 + 1 + strings.IndexByte(token[d1+1:], '.')
	if d2 == d1 || strings.IndexByte(token[d2+1:], '.') >= 0 {
		return nil, fail(ErrMalformed, "not three dot-separated segments")
	}
	hSeg, pSeg, sSeg := token[:d1], token[d1+1:d2], token[d2+1:]
	if !isBase64URL(hSeg) || !isBase64URL(pSeg) || !isBase64URL(sSeg) {
		return nil, fail(ErrMalformed, "segment is not unpadded base64url")
	}
	// Two allocations for the three segments: the token's bytes (whose first
	// d2 bytes are the signing input) and one buffer for the decoded header,
	// payload and signature.
	enc := base64.RawURLEncoding.Strict()
	tok := []byte(token)
	hLen, pLen, sLen := enc.DecodedLen(len(hSeg)), enc.DecodedLen(len(pSeg)), enc.DecodedLen(len(sSeg))
	buf := make([]byte, hLen+pLen+sLen)
	// Strict decoding refuses non-zero trailing bits: another spelling of
	// the same bytes, which jwx would accept.
	if _, err := enc.Decode(buf[:hLen], tok[:d1]); err != nil {
		return nil, fail(ErrMalformed, "header is not canonical base64url")
	}
	if _, err := enc.Decode(buf[hLen:hLen+pLen], tok[d1+1:d2]); err != nil {
		return nil, fail(ErrMalformed, "payload is not canonical base64url")
	}
	if _, err := enc.Decode(buf[hLen+pLen:], tok[d2+1:]); err != nil {
		return nil, fail(ErrMalformed, "signature is not canonical base64url")
	}
	u := &Unverified{input: tok[:d2:d2], sig: buf[hLen+pLen:]}

	// One string holds the decoded header and payload; the values decoded
	// from them (alg, kid, claims) are substrings of it.
	text := string(buf[:hLen+pLen])
	hdr, reason := decodeStrictObjectString(text[:hLen])
	if reason != "" {
		return nil, fail(ErrMalformed, "header: "+reason)
	}
	if err := u.checkHeader(hdr); err != nil {
		return nil, err
	}
	raw, reason := decodeStrictObjectString(text[hLen:])
	if reason != "" {
		return nil, fail(ErrMalformed, "payload: "+reason)
	}
	if reason := parseClaims(&u.claims, raw); reason != "" {
		return nil, fail(ErrMalformed, reason)
	}
	u.parsed = true
	return u, nil
}

// isBase64URL reports whether s is a non-empty string of the base64url
// alphabet (RFC 4648 §5) without padding, of a length some input encodes to.
func isBase64URL(s string) bool {
	if len(s) == 0 || len(s)%4 == 1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !base64URLAlphabet[s[i]] {
			return false
		}
	}
	return true
}

// base64URLAlphabet marks the bytes of the base64url alphabet (RFC 4648 §5): one load per
// byte of a token instead of five comparisons.
var base64URLAlphabet = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") {
		t[c] = true
	}
	return t
}()

// checkHeader reads the protected header in one pass over its members. The
// refusals keep their priority whatever the member order: a forbidden
// parameter first, then a malformed thumbprint, then alg, kid, typ and cty.
func (u *Unverified) checkHeader(hdr map[string]any) error {
	var forbidden, badThumbprint, badTyp, hasAlg bool
	var alg, kid any
	for name, v := range hdr {
		switch name {
		case "alg":
			alg, hasAlg = v, true
		case "kid":
			kid, u.hasKid = v, true
		case "typ", "cty":
			s, isStr := v.(string)
			badTyp = badTyp || !isStr
			if name == "typ" {
				u.typ = s
			}
		default:
			if slices.Contains(thumbprintHeaders, name) {
				s, isStr := v.(string)
				badThumbprint = badThumbprint || !isStr || !isBase64URL(s)
			} else if slices.Contains(forbiddenHeaders, name) {
				forbidden = true
			}
		}
	}
	switch {
	case forbidden:
		return fail(ErrForbiddenHeader, "forbidden header parameter")
	case badThumbprint:
		return fail(ErrMalformed, "certificate thumbprint is not base64url")
	case !hasAlg:
		return fail(ErrMalformed, "header has no alg")
	}
	algStr, ok := alg.(string)
	if !ok {
		return fail(ErrMalformed, "header alg is not a string")
	}
	if _, known := verifyAlgs[algStr]; !known {
		// none (any case), "", HS*, unknown and JWE algorithms.
		return fail(ErrUnsupportedAlg, "unsupported alg")
	}
	u.alg = algStr
	if u.hasKid {
		s, isStr := kid.(string)
		if !isStr || !validKeyID(s) {
			return fail(ErrMalformed, "header kid is not a short printable string")
		}
		u.kid = s
	}
	if badTyp {
		return fail(ErrMalformed, "header typ or cty is not a string")
	}
	return nil
}

// parseClaims types the registered claims of raw into c (RFC 7519 §4.1), in
// one pass over the members, and returns a fixed reason when one has the
// wrong JSON type.
func parseClaims(c *Claims, raw map[string]any) string {
	c.Raw = raw
	for name, v := range raw {
		var dst *string
		var t *time.Time
		var has *bool
		switch name {
		case "iss":
			dst = &c.Issuer
		case "sub":
			dst = &c.Subject
		case "jti":
			dst = &c.ID
		case "exp":
			t, has = &c.Expiry, &c.HasExpiry
		case "nbf":
			t, has = &c.NotBefore, &c.HasNotBefore
		case "iat":
			t, has = &c.IssuedAt, &c.HasIssuedAt
		case "aud":
			if reason := c.audience(v); reason != "" {
				return reason
			}
			continue
		default:
			continue
		}
		if dst != nil {
			s, isStr := v.(string)
			if !isStr {
				return "claim iss, sub or jti is not a string"
			}
			*dst = s
			continue
		}
		d, reason := numericDate(v)
		if reason != "" {
			return reason
		}
		*t, *has = d, true
	}
	return ""
}

// audience reads "aud": a string or an array of strings (RFC 7519 §4.1.3).
func (c *Claims) audience(v any) string {
	switch a := v.(type) {
	case string:
		c.Audience = []string{a}
	case []any:
		c.Audience = make([]string, 0, len(a))
		for _, e := range a {
			s, isStr := e.(string)
			if !isStr {
				return "claim aud is not a string or an array of strings"
			}
			c.Audience = append(c.Audience, s)
		}
	default:
		return "claim aud is not a string or an array of strings"
	}
	return ""
}

// numericDate reads an RFC 7519 §2 NumericDate: a JSON number (never a string
// or an RFC 3339 date, which jwx would accept), finite and with |v| < 2^53.
// Values <= 0 are returned as they are for the caller to reject.
func numericDate(v any) (time.Time, string) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, "NumericDate claim is not a JSON number"
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || math.Abs(f) >= maxNumericDate {
		return time.Time{}, "NumericDate claim is out of range"
	}
	sec := math.Floor(f)
	nsec := math.Round((f - sec) * 1e9)
	return time.Unix(int64(sec), int64(nsec)).UTC(), ""
}

// Issuer returns the unverified "iss" claim, for choosing which provider's
// keys to verify with (RFC 8725 §3.8: the caller must still compare the
// verified iss with that provider's issuer).
func (u *Unverified) Issuer() string {
	if u == nil {
		return ""
	}
	return u.claims.Issuer
}

// KeyID returns the header kid ("" when absent).
func (u *Unverified) KeyID() string {
	if u == nil {
		return ""
	}
	return u.kid
}

// Algorithm returns the header alg, already known to be an asymmetric JWS
// algorithm this package supports.
func (u *Unverified) Algorithm() string {
	if u == nil {
		return ""
	}
	return u.alg
}

// Type returns the header typ ("" when absent).
func (u *Unverified) Type() string {
	if u == nil {
		return ""
	}
	return u.typ
}

// fixedSigLen is the signature size the algorithm dictates regardless of the
// key: R||S for ECDSA (RFC 7518 §3.4; DER is not JWS), 64 bytes for Ed25519
// (RFC 8032 §5.1.6). RSA signatures are checked by jwx against the modulus.
var fixedSigLen = map[string]int{"ES256": 64, "ES384": 96, "ES512": 132, "EdDSA": 64}

// Verify checks the signature with exactly one key of ks and returns the
// claims. The header alg must be in allowed and fit the key: equal to the
// key's alg, or, for a key published without alg, one of the allowed
// algorithms of its key type and curve (RFC 8725 §3.1; jwx v2 would verify with
// the JWK's alg whatever the header says, docs/security.md#jose-hardening). The
// key is the one named by kid; a token without kid is accepted only when
// exactly one key of the set fits the alg. jwx then verifies with that one key
// and alg.
//
// Verify checks no claim values (exp, aud, iss…): that is the caller's job.
func (u *Unverified) Verify(ks *KeySet, allowed []string) (*Claims, error) {
	key, err := u.selectKey(ks, allowed)
	if err != nil {
		return nil, err
	}
	// jwx's verifier for the header alg checks the signature over the JWS
	// Signing Input with the one selected key (its parsed public key, held
	// since ParseKeySet): the same call jws.Verify makes after re-parsing the
	// token and re-encoding header and payload into exactly these bytes
	// (RFC 7515 §5.2 steps 8-9). Handing jwx the bytes Parse checked leaves
	// no second parser to disagree with the first: what is verified is what
	// the claims were read from.
	verifier, err := jws.NewVerifier(jwa.SignatureAlgorithm(u.alg))
	if err != nil {
		return nil, fail(ErrUnsupportedAlg, "alg has no verifier")
	}
	if err := verifier.Verify(u.input, u.sig, key.pub); err != nil {
		return nil, fail(ErrBadSignature, "signature does not verify")
	}
	return u.claimsCopy(), nil
}

// selectKey returns the one key of ks that may verify u (see Verify).
//
// It and claimsCopy are apart from Verify so that Verify's frame is small
// while the signature is checked: the request's goroutine runs the deepest
// code of a Check (crypto/internal/fips140/bigmod's frames are 2-5 KB), and
// every byte above it counts towards copying the goroutine's stack to a
// larger one (issue 11).
//
//go:noinline
func (u *Unverified) selectKey(ks *KeySet, allowed []string) (*verifyKey, error) {
	if u == nil || !u.parsed {
		return nil, fail(ErrMalformed, "token was not parsed")
	}
	if !slices.Contains(allowed, u.alg) {
		return nil, fail(ErrUnsupportedAlg, "alg not in the allow-list")
	}
	if ks == nil || len(ks.keys) == 0 {
		return nil, fail(ErrUnknownKey, "no keys")
	}
	var key *verifyKey
	if u.hasKid {
		i, ok := ks.byKid[u.kid]
		if !ok {
			return nil, fail(ErrUnknownKey, "unknown kid")
		}
		key = &ks.keys[i]
		if !key.fits(u.alg) {
			return nil, fail(ErrUnsupportedAlg, "alg does not match the key")
		}
	} else {
		for i := range ks.keys {
			if ks.keys[i].fits(u.alg) {
				if key != nil {
					return nil, fail(ErrUnknownKey, "no kid and several keys fit the alg")
				}
				key = &ks.keys[i]
			}
		}
		if key == nil {
			return nil, fail(ErrUnknownKey, "no key fits the alg")
		}
	}
	if n, ok := fixedSigLen[u.alg]; ok && len(u.sig) != n {
		return nil, fail(ErrBadSignature, "signature has the wrong length")
	}
	return key, nil
}

// claimsCopy returns a fresh Claims per call; Raw is shared and must be
// treated as read-only.
//
//go:noinline
func (u *Unverified) claimsCopy() *Claims {
	c := u.claims
	return &c
}
