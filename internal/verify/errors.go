package verify

import (
	"errors"

	"github.com/tokengate/tokengate/internal/jose"
)

// Kind classifies a verification failure for the decision it leads to
// (docs/decisions.md#the-decision-table).
type Kind int

const (
	// KindInvalid: the token is not acceptable; 401 with error="invalid_token" (RFC 6750 §3.1).
	KindInvalid Kind = iota
	// KindUnavailable: the keys of the token's provider have never loaded, so the token cannot
	// be judged; 503. Once keys loaded, failures to refresh them never lead here.
	KindUnavailable
)

func (k Kind) String() string {
	if k == KindUnavailable {
		return "unavailable"
	}
	return "invalid"
}

// Fixed descriptions, safe for the RFC 6750 error_description attribute and JSON bodies: they
// never hold a token, a kid, a claim value or a library's error text (CVE-2019-7644 leaked a
// signature through an error message). error_description must be ASCII (RFC 6750 §3).
const (
	DescMalformed    = "token is malformed"
	DescTooLarge     = "token is too large"
	DescHeader       = "token header is not accepted"
	DescAlgorithm    = "token algorithm is not allowed"
	DescType         = "token type is not accepted"
	DescIssuer       = "token issuer is not trusted"
	DescUnknownKey   = "token key is unknown"
	DescSignature    = "token signature is invalid"
	DescNoExpiry     = "token has no expiry"
	DescExpired      = "token has expired"
	DescNotYetValid  = "token is not yet valid"
	DescIssuedFuture = "token is issued in the future"
	DescLifetime     = "token lifetime is too long"
	DescAudience     = "token audience is not accepted"
	DescInvalid      = "token is invalid"
	DescUnavailable  = "token issuer keys are not available"
)

// Error is a verification failure. Description is one of the Desc constants; Err, when set,
// is the underlying cause for logs (a jose sentinel or a context error; never client-facing).
type Error struct {
	Kind        Kind
	Description string
	Err         error
}

// Error returns the fixed description.
func (e *Error) Error() string { return e.Description }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func invalid(desc string, cause error) *Error {
	return &Error{Kind: KindInvalid, Description: desc, Err: cause}
}

// joseError maps an error of jose.Parse or Verify to a fixed description.
func joseError(err error) *Error {
	switch {
	case errors.Is(err, jose.ErrUnsupportedAlg):
		return invalid(DescAlgorithm, err)
	case errors.Is(err, jose.ErrUnknownKey):
		return invalid(DescUnknownKey, err)
	case errors.Is(err, jose.ErrBadSignature):
		return invalid(DescSignature, err)
	case errors.Is(err, jose.ErrForbiddenHeader):
		return invalid(DescHeader, err)
	case errors.Is(err, jose.ErrMalformed):
		return invalid(DescMalformed, err)
	}
	return invalid(DescInvalid, err)
}
