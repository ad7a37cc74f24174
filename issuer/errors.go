package issuer

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Error codes the token and introspection endpoints answer with (RFC 6749 §5.2, RFC 8707 §2,
// and ErrSlowDown below).
const (
	ErrInvalidRequest       = "invalid_request"
	ErrInvalidClient        = "invalid_client"
	ErrInvalidGrant         = "invalid_grant"
	ErrUnauthorizedClient   = "unauthorized_client"
	ErrUnsupportedGrantType = "unsupported_grant_type"
	ErrInvalidScope         = "invalid_scope"
	ErrInvalidTarget        = "invalid_target"
	// ErrServerError (RFC 6749 §4.1.2.1) answers 500 when signing fails, which only a broken
	// key can cause.
	ErrServerError = "server_error"
	// ErrSlowDown answers, with 429 and Retry-After, a client authentication refused because too many
	// recent attempts failed for that (client_id, caller IP) or that caller IP
	// (docs/issuer.md#failure-limiter). The code is the one RFC 8628 §3.5 registered in the IANA
	// "OAuth Extensions Error" registry for "retry more slowly". It is preferred to invalid_client,
	// which would tell a client holding a good secret that its credentials are wrong. It is answered
	// before the secret is looked at, identically for existing and unknown client_ids, so it never
	// says whether a client exists.
	ErrSlowDown = "slow_down"
)

// oauthError is one RFC 6749 §5.2 error answer. desc is a fixed ASCII text (the §5.2 charset:
// %x20-21 / %x23-5B / %x5D-7E) that never echoes the request.
type oauthError struct {
	status     int
	code, desc string
	retryAfter time.Duration // 429 only
}

func (e *oauthError) Error() string { return e.code + ": " + e.desc }

// The fixed answers. Descriptions never contain request data, a secret, a token or a kid.
var (
	errMethod           = &oauthError{http.StatusMethodNotAllowed, ErrInvalidRequest, "the endpoint accepts only POST", 0}
	errTooLarge         = &oauthError{http.StatusRequestEntityTooLarge, ErrInvalidRequest, "request body too large", 0}
	errReadBody         = &oauthError{http.StatusBadRequest, ErrInvalidRequest, "request body could not be read", 0}
	errContentType      = &oauthError{http.StatusBadRequest, ErrInvalidRequest, "content type must be application/x-www-form-urlencoded or application/json", 0}
	errBadForm          = &oauthError{http.StatusBadRequest, ErrInvalidRequest, "malformed form body", 0}
	errBadJSON          = &oauthError{http.StatusBadRequest, ErrInvalidRequest, "malformed JSON body: expected one object with string parameters", 0}
	errRepeated         = &oauthError{http.StatusBadRequest, ErrInvalidRequest, "a parameter is repeated", 0}
	errBadUTF8          = &oauthError{http.StatusBadRequest, ErrInvalidRequest, "parameters must be valid UTF-8", 0}
	errQueryCredentials = &oauthError{http.StatusBadRequest, ErrInvalidRequest, "client credentials must not be sent in the URL", 0}
	errBadQuery         = &oauthError{http.StatusBadRequest, ErrInvalidRequest, "malformed URL query", 0}
	errTwoMethods       = &oauthError{http.StatusBadRequest, ErrInvalidRequest, "more than one client authentication method used", 0}
	errBadBasic         = &oauthError{http.StatusBadRequest, ErrInvalidRequest, "malformed Basic authorization header", 0}
	errTwoAuthHeaders   = &oauthError{http.StatusBadRequest, ErrInvalidRequest, "more than one Authorization header", 0}
	errNoGrantType      = &oauthError{http.StatusBadRequest, ErrInvalidRequest, "grant_type is required", 0}
	errGrantType        = &oauthError{http.StatusBadRequest, ErrUnsupportedGrantType, "only the client_credentials and token-exchange grants are supported", 0}
	errAssertionParams  = &oauthError{http.StatusBadRequest, ErrInvalidRequest, "client_assertion and client_assertion_type must be sent together", 0}
	errUnauthorized     = &oauthError{http.StatusBadRequest, ErrUnauthorizedClient, "the client may not use this grant type", 0}
	errNoSubject        = &oauthError{http.StatusBadRequest, ErrInvalidRequest, "subject_token and subject_token_type are required", 0}
	errSubjectType      = &oauthError{http.StatusBadRequest, ErrInvalidRequest, "subject_token_type must be an access_token or jwt token type", 0}
	errRequestedType    = &oauthError{http.StatusBadRequest, ErrInvalidRequest, "only access tokens are issued (requested_token_type)", 0}
	errActorToken       = &oauthError{http.StatusBadRequest, ErrInvalidRequest, "actor_token is not supported", 0}
	errSubject          = &oauthError{http.StatusBadRequest, ErrInvalidGrant, "the subject token is invalid, expired or not from a trusted provider", 0}
	errBoundSubject     = &oauthError{http.StatusBadRequest, ErrInvalidGrant, "the subject token is sender-constrained (cnf) and cannot be exchanged for a bearer token", 0}
	errMayAct           = &oauthError{http.StatusBadRequest, ErrInvalidGrant, "the subject token does not allow this client to act for it", 0}
	errNoToken          = &oauthError{http.StatusBadRequest, ErrInvalidRequest, "token is required", 0}
	errClient           = &oauthError{http.StatusUnauthorized, ErrInvalidClient, "client authentication failed", 0}
	errScope            = &oauthError{http.StatusBadRequest, ErrInvalidScope, "a requested scope is invalid or not allowed for this client", 0}
	errTarget           = &oauthError{http.StatusBadRequest, ErrInvalidTarget, "the requested audience is not allowed for this client", 0}
	errServer           = &oauthError{http.StatusInternalServerError, ErrServerError, "the token could not be issued", 0}
)

func errSlowDown(wait time.Duration) *oauthError {
	return &oauthError{http.StatusTooManyRequests, ErrSlowDown,
		"too many failed client authentications; retry after the Retry-After interval", wait}
}

// noStore sets the headers RFC 6749 §5.1 requires on every response that may carry a token or a
// credential decision (and RFC 7662 §2.2 on introspection): caches must not keep it.
func noStore(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// writeError answers e as RFC 6749 §5.2 JSON. A 401 always carries the Basic challenge: RFC 6749
// §5.2 requires it when the client used Basic, and RFC 9110 §15.5.2 requires a challenge on every
// 401, so the answer does not differ between authentication methods of the same client either.
func writeError(w http.ResponseWriter, e *oauthError) {
	h := w.Header()
	noStore(h)
	switch e.status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Basic realm="tokengate"`)
	case http.StatusMethodNotAllowed:
		h.Set("Allow", http.MethodPost)
	case http.StatusTooManyRequests:
		secs := int64((e.retryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	}
	writeJSON(w, e.status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{e.code, e.desc})
}

// writeJSON writes v with its status; v is always one of our own types, so Marshal cannot fail.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"server_error","error_description":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
