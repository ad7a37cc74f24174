package extauthz

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Body error codes of the denials (docs/decisions.md#the-decision-table). The first three are
// RFC 6750 §3.1 error codes and are also written into WWW-Authenticate; the others appear only in
// the JSON body.
const (
	errInvalidRequest    = "invalid_request"
	errInvalidToken      = "invalid_token"
	errInsufficientScope = "insufficient_scope"
	errInvalidClient     = "invalid_client"
	errUnauthorized      = "unauthorized"
	errAccessDenied      = "access_denied"
	errUnavailable       = "temporarily_unavailable"
	errSlowDown          = "slow_down"
)

// realm is the RFC 6750 §3 / RFC 7617 realm of every challenge.
const realm = `realm="tokengate"`

// HeaderValue is one request header the gateway sets (overwriting) before forwarding upstream.
type HeaderValue struct {
	Name  string // lower-case
	Value string
}

// Decision is the transport-neutral outcome of one authorization request.
type Decision struct {
	Allowed bool

	// Denial (Allowed == false).
	Status          int    // HTTP status for the client: 400, 401, 403, 429 or 503
	WWWAuthenticate string // challenge, or "" for none
	Error           string // body "error"
	Description     string // body "error_description"; fixed texts only, never a token or secret
	RetryAfter      int    // seconds, for a 429 (Retry-After header); 0 for none

	// Allow (Allowed == true).
	SetHeaders    []HeaderValue // each overwrites (OVERWRITE_IF_EXISTS_OR_ADD)
	RemoveHeaders []string      // lower-case names; never one that is also set
	// Passthrough is true when the caller's Authorization goes upstream untouched; forward-auth
	// then answers it back so gateways that copy response headers keep it.
	Passthrough bool
	// Metadata for access logs: sub, iss, client_id, scope, route (only non-empty values).
	Metadata map[string]string

	// For logs and metrics; never sent to the client.
	Route     string // "" when no route was selected
	Reason    string // why it was denied, for the log line
	TokenHash string // short hash of the caller's credential, for correlating log lines

	// upstream is the prebuilt header of SetHeaders' upstream Authorization, when the authorizer
	// set one; CheckResponseFor uses its gRPC form when the value still matches.
	upstream *upstreamHeader
}

// Body is the JSON body of a denial: {"error":"…","error_description":"…"}.
func (d *Decision) Body() string {
	b, err := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{d.Error, d.Description})
	if err != nil { // cannot happen for two strings; keep a valid body regardless
		return `{"error":"temporarily_unavailable","error_description":"internal error"}`
	}
	return string(b)
}

// scheme names the credential a route takes, which decides the challenge of a 401.
type scheme int

const (
	schemeBearer scheme = iota
	schemeBasic
)

func (s scheme) challenge(attrs ...string) string {
	name := "Bearer"
	if s == schemeBasic {
		name = "Basic"
	}
	return name + " " + strings.Join(append([]string{realm}, attrs...), ", ")
}

// missingCredentials: RFC 6750 §3.1, a request without authentication gets a challenge with no
// error code.
func missingCredentials(s scheme, reason string) Decision {
	return Decision{Status: http.StatusUnauthorized, WWWAuthenticate: s.challenge(),
		Error: errUnauthorized, Description: "credentials are required", Reason: reason}
}

// invalidRequest: an empty token, two credentials or a malformed header (RFC 6750 §3.1).
func invalidRequest(s scheme, description string) Decision {
	return Decision{Status: http.StatusBadRequest,
		WWWAuthenticate: s.challenge(`error="invalid_request"`),
		Error:           errInvalidRequest, Description: description, Reason: description}
}

// invalidToken: the token failed verification. description must be one of the fixed texts of
// the verifier, so it is safe to quote.
func invalidToken(description string) Decision {
	return Decision{Status: http.StatusUnauthorized,
		WWWAuthenticate: schemeBearer.challenge(`error="invalid_token"`, `error_description="`+quoteSafe(description)+`"`),
		Error:           errInvalidToken, Description: description, Reason: description}
}

// invalidClient: an IdP refused the caller's own (exchanged) credentials (RFC 6749 §5.2
// invalid_client; docs/decisions.md#the-decision-table).
func invalidClient() Decision {
	return Decision{Status: http.StatusUnauthorized, WWWAuthenticate: schemeBasic.challenge(),
		Error: errInvalidClient, Description: "client credentials were rejected", Reason: "exchanged credentials rejected"}
}

// tooLargeBasic: Basic credentials above server.max_token_bytes. The body error is that of an
// oversized credential (invalid_token); the challenge is the Basic one of a client_credentials
// route, which carries no error attribute (RFC 7617 §2 defines realm and charset only).
func tooLargeBasic() Decision {
	return Decision{Status: http.StatusUnauthorized, WWWAuthenticate: schemeBasic.challenge(),
		Error: errInvalidToken, Description: "the credentials are too large", Reason: "credentials are too large"}
}

// insufficientScope names every scope the route requires (RFC 6750 §3.1).
func insufficientScope(required []string) Decision {
	scope := strings.Join(required, " ")
	return Decision{Status: http.StatusForbidden,
		WWWAuthenticate: schemeBearer.challenge(`error="insufficient_scope"`, `scope="`+quoteSafe(scope)+`"`),
		Error:           errInsufficientScope, Description: "the token lacks a required scope", Reason: "missing scope"}
}

func accessDenied(description string) Decision {
	return Decision{Status: http.StatusForbidden, Error: errAccessDenied, Description: description, Reason: description}
}

// slowDown: too many failed client authentications for this client id and caller address, or for
// this address (docs/issuer.md#failure-limiter). Retry-After is whole seconds, rounded up, at least
// 1 (RFC 9110 §10.2.3).
func slowDown(wait time.Duration) Decision {
	secs := int((wait + time.Second - 1) / time.Second)
	return Decision{Status: http.StatusTooManyRequests, Error: errSlowDown,
		Description: "too many failed client authentications; retry later", RetryAfter: max(secs, 1),
		Reason: "failure limiter"}
}

// DenialHeaders are the response headers of a denial, lower-case, for both transports.
func (d *Decision) DenialHeaders() []HeaderValue {
	h := []HeaderValue{{Name: "content-type", Value: "application/json"}}
	if d.WWWAuthenticate != "" {
		h = append(h, HeaderValue{Name: "www-authenticate", Value: d.WWWAuthenticate})
	}
	if d.RetryAfter > 0 {
		h = append(h, HeaderValue{Name: "retry-after", Value: strconv.Itoa(d.RetryAfter)})
	}
	return h
}

func unavailable(description, reason string) Decision {
	return Decision{Status: http.StatusServiceUnavailable, Error: errUnavailable, Description: description, Reason: reason}
}

// quoteSafe keeps a value legal inside an RFC 7230 quoted-string as RFC 6750 §3 restricts it
// (%x20-21 / %x23-5B / %x5D-7E): anything else is dropped.
func quoteSafe(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '"' && c != '\\' {
			b.WriteByte(c)
		}
	}
	return b.String()
}
