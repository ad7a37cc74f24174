package jose

import "errors"

// Sentinel errors. Every error returned by Parse, Verify and ParseKeySet wraps
// exactly one of them (test with errors.Is). The Error() text of a returned
// error is a fixed description chosen from constants in this package: it never
// contains the token, a kid, a claim value, key material or a library's error
// text (RFC 8725 §3.2 spirit; CVE-2019-7644 leaked a signature through an
// error message). It is therefore safe to log, though callers should still map
// it to a fixed client-facing description.
var (
	// ErrMalformed: the token is not a well-formed compact JWS/JWT as this
	// package accepts it (size, segments, base64url, UTF-8, JSON, claim types).
	ErrMalformed = errors.New("jose: malformed token")
	// ErrUnsupportedAlg: the header alg is none/HMAC/unknown, not in the
	// caller's allow-list, or does not match the selected key.
	ErrUnsupportedAlg = errors.New("jose: algorithm not allowed")
	// ErrUnknownKey: no key of the set fits the token (unknown kid, or no kid
	// and not exactly one candidate key).
	ErrUnknownKey = errors.New("jose: no matching key")
	// ErrBadSignature: the signature did not verify with the selected key.
	ErrBadSignature = errors.New("jose: signature verification failed")
	// ErrForbiddenHeader: the protected header carries a parameter this
	// package refuses (crit, b64, zip, enc, jwk, jku, x5u, x5c, x5t, ...).
	ErrForbiddenHeader = errors.New("jose: forbidden header parameter")
	// ErrNoUsableKeys: a JWK Set contained no key usable for verification.
	ErrNoUsableKeys = errors.New("jose: no usable keys")
)

// joseError pairs a sentinel with a fixed, safe reason. reason must always be
// a string constant of this package, never data derived from input.
type joseError struct {
	kind   error
	reason string
	also   error // optional second sentinel
}

func (e *joseError) Error() string { return e.kind.Error() + ": " + e.reason }
func (e *joseError) Unwrap() []error {
	if e.also != nil {
		return []error{e.kind, e.also}
	}
	return []error{e.kind}
}

func fail(kind error, reason string) error { return &joseError{kind: kind, reason: reason} }
