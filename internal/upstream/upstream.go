// Package upstream obtains and caches the credentials tokengate sends to upstream services:
// client-credentials tokens fetched from an external IdP with tokengate's own credentials
// (mode "fetch", RFC 6749 §4.4), tokens obtained with a caller's credentials (mode "exchange")
// and tokens minted by tokengate's own issuer (mode "mint").
//
// Every mode goes through one bounded cache (docs/upstream.md#caches) that
//   - answers from memory without locking on the token while the token is fresh;
//   - refreshes in the background once about 80 % of the lifetime has passed (with jitter, so a
//     fleet of replicas does not stampede the IdP at the same instant);
//   - never serves a token in its last 10 % of lifetime (at most its last 10 s) while a refresh
//     can succeed, and keeps serving it until its real expiry while the IdP fails;
//   - makes one IdP call for any number of concurrent callers of the same key, detached from the
//     caller that started it, while each caller waits at most the route's timeout;
//   - backs off exponentially with jitter after failures and honours Retry-After;
//   - remembers rejected caller credentials briefly (negative cache) so a bad caller cannot make
//     tokengate hammer the IdP;
//   - keeps at most MaxVerificationsPerRoute exchanges of one route in flight at the IdP; the
//     next wait within the route's timeout, then fail with ErrBusy (503);
//   - with a Store, never waits for another replica's fetch lock longer than the route's
//     timeout before fetching itself.
//
// The token requests themselves are made by golang.org/x/oauth2/clientcredentials with an
// explicit auth style (never auto-detection, which retries with the other style), through an
// HTTP client that verifies TLS, follows no redirect and caps the response size. The tokens are
// never parsed: IdPs may issue opaque tokens. Error texts and log lines never contain a token,
// a secret or an IdP's response body; at most the IdP's HTTP status and OAuth error code.
//
// An optional shared Store (for example Redis, package redisstore) sits behind the in-process
// cache: it is consulted only when the local cache misses or refreshes, never on a local hit.
package upstream

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tokengate/tokengate/internal/defaults"
	"github.com/tokengate/tokengate/internal/httpx"
)

// Modes, the values of the `mode` label of tokengate_upstream_token_requests_total.
const (
	ModeFetch    = "fetch"
	ModeExchange = "exchange"
	ModeMint     = "mint"
	// ModeTokenExchange: the caller's token exchanged for the upstream's (RFC 8693).
	ModeTokenExchange = "token_exchange"
)

// Auth styles of ClientCredentials.AuthStyle (RFC 6749 §2.3.1).
const (
	AuthStyleBasic = "basic" // client_secret_basic: HTTP Basic header (the default)
	AuthStyleBody  = "body"  // client_secret_post: client_id and client_secret as form fields (Auth0)
)

// Defaults applied when a field is zero. The timeout, the token lifetime and the cache size
// are internal/defaults' (UpstreamTimeout, UpstreamTokenTTL, CacheEntries).
const (
	DefaultNegativeTTL = 30 * time.Second
	DefaultBackoffBase = time.Second
	DefaultBackoffMax  = time.Minute
	// DefaultMaxResponseBytes caps a token response. x/oauth2 itself silently truncates at 1 MiB
	// and then fails to parse; we refuse anything larger than this with a clear reason.
	DefaultMaxResponseBytes = 256 << 10
	// MaxAccessTokenBytes bounds an access token we accept from an IdP (it ends up in a header).
	MaxAccessTokenBytes = 32 << 10
	// MaxVerificationsPerRoute bounds the Exchange calls of one route in flight at the IdP at once
	// (docs/configuration.md#rules-across-keys: "at most 16 verifications per route in flight"): a
	// caller guessing secrets with distinct credentials cannot open more connections to the IdP than
	// this, and one route cannot take every connection to the IdP from the others.
	MaxVerificationsPerRoute = 16
	// maxRetryAfter bounds how long an IdP's Retry-After can silence a key.
	maxRetryAfter = 10 * time.Minute
)

// Token is an upstream access token with its lifetime as seen by tokengate's clock. The caller
// writes the "Bearer " prefix itself; AccessToken is exactly what the IdP (or minter) issued.
type Token struct {
	AccessToken string
	Expiry      time.Time // when the token stops being usable; never zero for a cached token
	IssuedAt    time.Time // when tokengate obtained it (the start of the request, conservatively)
}

// ClientCredentials selects one token at one token endpoint (RFC 6749 §4.4).
// For mode "exchange" ClientID and ClientSecret are the caller's.
type ClientCredentials struct {
	TokenURL     string
	ClientID     string
	ClientSecret string
	Scopes       []string // sent space-separated in "scope" (RFC 6749 §3.3)
	Audience     string   // sent as the "audience" form field (Auth0, RFC 8693 style)
	// EndpointParams are extra form fields (KrakenD's endpoint_params). "grant_type" may not be
	// overridden; "scope" may not be given together with Scopes; "audience" must agree with Audience.
	EndpointParams map[string][]string
	AuthStyle      string        // "basic" (default) or "body"
	Timeout        time.Duration // bound on a caller's whole wait for this token (default defaults.UpstreamTimeout)
	DefaultTTL     time.Duration // lifetime when the IdP's answer has no expires_in (default defaults.UpstreamTokenTTL)
	// Auth, when set, authenticates the client with a JWT assertion instead of ClientSecret
	// (RFC 7523 §2.2): a PrivateKeyJWTAuth or a ClientAssertionFileAuth, applied anew to every
	// request. ClientSecret and AuthStyle must then be empty. Never for an exchange, which sends
	// the caller's own credentials.
	Auth ClientAuth
}

// Validate reports a configuration problem of cc that would make every token request fail.
// allowHTTP permits http:// token URLs for non-loopback hosts (server.allow_http_urls); the
// URL rule is httpx.CheckURL's (RFC 6749 §3.2: the token endpoint MUST use TLS; no
// credentials, no fragment). The error text names the field but never its value.
func (cc ClientCredentials) Validate(allowHTTP bool) error { return cc.validate(allowHTTP, true) }

// validate is Validate; ownID is false for a route that exchanges its callers' own credentials,
// whose client id comes with each request.
func (cc ClientCredentials) validate(allowHTTP, ownID bool) error {
	if _, err := httpx.CheckURL(cc.TokenURL, allowHTTP); err != nil {
		return fmt.Errorf("token_url: %w", err)
	}
	if ownID && cc.ClientID == "" {
		return errors.New("client_id: required")
	}
	switch cc.AuthStyle {
	case "", AuthStyleBasic, AuthStyleBody:
	default:
		return fmt.Errorf("auth_style: must be %q or %q", AuthStyleBasic, AuthStyleBody)
	}
	if cc.Auth != nil && !ownID {
		// An exchange verifies the caller's own client id and secret (RFC 6749 §2.3.1): an
		// authentication of tokengate's own would replace the caller's secret, and the IdP
		// would accept whatever secret the caller sent.
		return errors.New("client authentication: an exchange authenticates with the caller's own secret, never tokengate's")
	}
	if cc.Auth != nil {
		if _, ok := cc.Auth.(assertionAuth); !ok {
			return errors.New("client authentication: unsupported method for this mode")
		}
		if cc.ClientSecret != "" || cc.AuthStyle != "" {
			return errors.New("client_secret: conflicts with the client assertion")
		}
	}
	if cc.Timeout < 0 {
		return errors.New("timeout: must not be negative")
	}
	if cc.DefaultTTL < 0 {
		return errors.New("default_ttl: must not be negative")
	}
	for _, s := range cc.Scopes {
		if s == "" || strings.ContainsAny(s, " \"\\") || !isVSChars(s) {
			return errors.New("scopes: each scope must be a non-empty RFC 6749 scope-token")
		}
	}
	for k, v := range cc.EndpointParams {
		switch k {
		case "grant_type":
			return errors.New("endpoint_params: grant_type may not be overridden")
		case "scope":
			if len(cc.Scopes) > 0 {
				return errors.New("endpoint_params: scope conflicts with scopes")
			}
		case "audience":
			if cc.Audience != "" && (len(v) != 1 || v[0] != cc.Audience) {
				return errors.New("endpoint_params: audience conflicts with audience")
			}
		case "":
			return errors.New("endpoint_params: empty parameter name")
		}
	}
	return nil
}

func (cc ClientCredentials) timeout() time.Duration {
	if cc.Timeout > 0 {
		return cc.Timeout
	}
	return defaults.UpstreamTimeout
}

func (cc ClientCredentials) defaultTTL() time.Duration {
	if cc.DefaultTTL > 0 {
		return cc.DefaultTTL
	}
	return defaults.UpstreamTokenTTL
}

// isVSChars reports whether s consists of RFC 6749 Appendix A VSCHAR (%x20-7E) only.
func isVSChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Sentinel errors. Every error returned by Fetch, Exchange and Mint is an *Error that matches
// one or both of these with errors.Is.
var (
	// ErrUnavailable: no valid upstream token can be had now (IdP down, slow, in backoff, an invalid
	// answer, or tokengate's own fetch credentials refused): 503
	// (docs/decisions.md#the-decision-table).
	ErrUnavailable = errors.New("upstream credential unavailable")
	// ErrRejected: the IdP refused the credentials. For mode "exchange" these are the caller's (401
	// invalid_client, docs/decisions.md#the-decision-table) and the error does not match
	// ErrUnavailable; for mode "fetch" they are tokengate's own, and the error matches ErrUnavailable
	// as well (503).
	ErrRejected = errors.New("upstream credential rejected")
	// ErrBusy: MaxVerificationsPerRoute exchanges of the route were already in flight at the
	// IdP and none finished within the caller's wait (the route's timeout, or the Check's
	// deadline). It matches ErrUnavailable too (503, docs/decisions.md#the-decision-table), never
	// ErrRejected.
	ErrBusy = errors.New("upstream: too many verifications in flight")
	// ErrExchangeRefused: the IdP refused to exchange the caller's token for the upstream's
	// (RFC 8693 §2.2.2: invalid_grant, invalid_target, ...): 403 access_denied
	// (docs/decisions.md#the-decision-table). It never matches ErrUnavailable.
	ErrExchangeRefused = errors.New("upstream: token exchange refused")
)

// Reasons carried by Error.Reason: fixed phrases, safe to show and to log.
const (
	ReasonIdPError        = "identity provider error"
	ReasonRejected        = "credentials rejected by the identity provider"
	ReasonTimeout         = "timed out"
	ReasonCanceled        = "canceled"
	ReasonConnection      = "cannot reach the identity provider"
	ReasonInvalidResponse = "invalid token response"
	ReasonTooLarge        = "token response too large"
	ReasonBadTokenType    = "token_type is not Bearer"
	ReasonBadExpiresIn    = "expires_in is not a positive number"
	ReasonBackoff         = "retrying later after a failure"
	ReasonInvalidConfig   = "invalid client credentials configuration"
	ReasonMintFailed      = "minting failed"
	ReasonClosed          = "cache closed"
	// ReasonSharedWait is no longer returned: a replica whose wait for another's fetch passes the
	// route's timeout fetches itself (docs/upstream.md#scale-out-replicas-share-tokens-through-redis).
	// Kept for callers that name it.
	ReasonSharedWait         = "timed out waiting for another replica"
	ReasonMissingCredentials = "missing client credentials"
	ReasonBusy               = "too many verifications in flight at the identity provider"
	ReasonExchangeRefused    = "the identity provider refused the token exchange"
	ReasonSubjectExpired     = "the caller's token has expired"
	ReasonClientAuth         = "cannot authenticate to the identity provider"
	ReasonBadIssuedType      = "issued_token_type is not the requested type"
)

// Error says why no upstream token could be had. Error() is safe for clients and logs: a fixed
// reason, the IdP's HTTP status and its OAuth error code (RFC 6749 §5.2) at most, never the
// IdP's response body, a token or a secret.
type Error struct {
	Mode       string        // fetch, exchange or mint
	Reason     string        // one of the Reason* constants
	Status     int           // the IdP's HTTP status, 0 when there was no HTTP answer
	Code       string        // the IdP's "error" code, sanitised; "" when none
	RetryAfter time.Duration // the IdP's Retry-After, 0 when none
	rejected   bool
	refused    bool  // a token exchange refused for the caller's token (ErrExchangeRefused)
	cause      error // only the caller's own mint error; never an IdP or library error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.refused {
		b.WriteString(ErrExchangeRefused.Error())
	} else if e.rejected {
		b.WriteString(ErrRejected.Error())
	} else {
		b.WriteString(ErrUnavailable.Error())
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	if e.Status != 0 || e.Code != "" {
		b.WriteString(" (")
		if e.Status != 0 {
			fmt.Fprintf(&b, "status %d", e.Status)
		}
		if e.Code != "" {
			if e.Status != 0 {
				b.WriteString(", ")
			}
			b.WriteString("error ")
			b.WriteString(e.Code)
		}
		b.WriteString(")")
	}
	return b.String()
}

// Is matches ErrUnavailable, ErrRejected and ErrBusy as documented on them.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrBusy:
		return e.Reason == ReasonBusy
	case ErrRejected:
		return e.rejected
	case ErrUnavailable:
		return !e.refused && (!e.rejected || e.Mode != ModeExchange)
	case ErrExchangeRefused:
		return e.refused
	}
	return false
}

// Unwrap returns the mint function's own error for mode "mint", nil otherwise.
func (e *Error) Unwrap() error { return e.cause }

// Rejected reports whether the IdP refused the credentials.
func (e *Error) Rejected() bool { return e.rejected }

// sanitizeCode keeps an IdP error code only when it is a short RFC 6749 §5.2 error token
// (%x20-21 / %x23-5B / %x5D-7E), so a hostile IdP cannot inject text into our errors or logs.
func sanitizeCode(s string) string {
	if s == "" {
		return ""
	}
	if len(s) > 64 {
		return "invalid_error_code"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == ' ' {
			return "invalid_error_code"
		}
	}
	return s
}
