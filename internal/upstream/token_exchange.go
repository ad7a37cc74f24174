package upstream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tokengate/tokengate/internal/defaults"
	"github.com/tokengate/tokengate/internal/httpx"
)

// RFC 8693 identifiers.
const (
	// GrantTypeTokenExchange is the grant_type of a token-exchange request (RFC 8693 §2.1).
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	// TokenTypeAccessToken is the default subject_token_type and requested_token_type
	// (RFC 8693 §3).
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
)

// TokenExchange is the configuration of a token_exchange route: where the caller's token is
// exchanged and for what (RFC 8693 §2.1).
type TokenExchange struct {
	TokenURL string
	ClientID string // tokengate's own client at the IdP; part of the cache key
	// Auth authenticates tokengate's client on each request (RFC 6749 §2.3). Required.
	Auth               ClientAuth
	Audience           string   // the `audience` parameter, "" for none
	Resource           string   // the `resource` parameter (an absolute URI, RFC 8707), "" for none
	Scopes             []string // sent space-separated in `scope` (RFC 6749 §3.3)
	SubjectTokenType   string   // default TokenTypeAccessToken
	RequestedTokenType string   // default TokenTypeAccessToken; the answer's issued_token_type must equal it
	Timeout            time.Duration
	DefaultTTL         time.Duration // lifetime when the answer has no expires_in (default defaults.UpstreamTokenTTL)
}

// ClientAuth authenticates tokengate's own client at a token endpoint (RFC 6749 §2.3). It is
// called once per request with the form about to be sent and the request's headers, and adds
// the client's credentials to either. Implementations are safe for concurrent use, never log a
// credential, and return an error that names no secret (the request is then not sent: 503).
// ClientSecretAuth is the one implementation here; RFC 7523 assertions and RFC 8705 mutual TLS
// are other ClientAuths.
type ClientAuth interface {
	Authenticate(ctx context.Context, tokenURL string, form url.Values, header http.Header) error
}

// ClientSecretAuth is client_secret_basic (the default) or client_secret_post (Style
// AuthStyleBody), RFC 6749 §2.3.1.
type ClientSecretAuth struct {
	ClientID, Secret string
	Style            string // AuthStyleBasic ("" too) or AuthStyleBody
}

// Authenticate adds the client id and secret: form-urlencoded inside the Basic credentials as
// RFC 6749 §2.3.1 requires, or as form fields.
func (a ClientSecretAuth) Authenticate(_ context.Context, _ string, form url.Values, h http.Header) error {
	if a.Style == AuthStyleBody {
		form.Set("client_id", a.ClientID)
		form.Set("client_secret", a.Secret)
		return nil
	}
	r := http.Request{Header: h}
	r.SetBasicAuth(url.QueryEscape(a.ClientID), url.QueryEscape(a.Secret))
	return nil
}

// Validate reports what is wrong with te (the error names the field, never a value).
func (te TokenExchange) Validate(allowHTTP bool) error {
	if _, err := httpx.CheckURL(te.TokenURL, allowHTTP); err != nil {
		return fmt.Errorf("token_url: %w", err)
	}
	if te.ClientID == "" {
		return errors.New("client_id: required")
	}
	if te.Auth == nil {
		return errors.New("client authentication: required")
	}
	if a, ok := te.Auth.(ClientSecretAuth); ok {
		switch a.Style {
		case "", AuthStyleBasic, AuthStyleBody:
		default:
			return fmt.Errorf("auth_style: must be %q or %q", AuthStyleBasic, AuthStyleBody)
		}
	}
	if te.Timeout < 0 || te.DefaultTTL < 0 {
		return errors.New("timeout: must not be negative")
	}
	for _, s := range te.Scopes {
		if s == "" || strings.ContainsAny(s, " \"\\") || !isVSChars(s) {
			return errors.New("scopes: each scope must be a non-empty RFC 6749 scope-token")
		}
	}
	if te.Resource != "" {
		// RFC 8707 §2: an absolute URI without a fragment.
		if u, err := url.Parse(te.Resource); err != nil || !u.IsAbs() || u.Fragment != "" {
			return errors.New("resource: must be an absolute URI without a fragment")
		}
	}
	for _, t := range []string{te.SubjectTokenType, te.RequestedTokenType} {
		if t != "" && (!isVSChars(t) || strings.ContainsRune(t, ' ') || !strings.Contains(t, ":")) {
			return errors.New("token types: must be URIs (RFC 8693 section 3)")
		}
	}
	return nil
}

func (te TokenExchange) subjectType() string {
	return orDefault(te.SubjectTokenType, TokenTypeAccessToken)
}
func (te TokenExchange) requestedType() string {
	return orDefault(te.RequestedTokenType, TokenTypeAccessToken)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// TokenExchangeSource is mode "token_exchange": the caller's verified token exchanged at an IdP
// for one meant for this route's upstream that still names the user (RFC 8693). The answer is
// cached per (route, caller token) and never served past the caller's own token's exp: a
// refresh is never needed, and the token obtained for a caller serves only that caller's
// token. Concurrent Checks with one caller token make one exchange; with a Store, one per fleet.
//
// Errors: the IdP refusing the exchange (400 invalid_grant, invalid_target, invalid_scope,
// unauthorized_client, invalid_request) match ErrExchangeRefused (403 access_denied) and not
// ErrUnavailable; everything else (tokengate's client rejected with 401, the IdP down, slow or
// answering anything but a valid RFC 8693 §2.2.1 response) matches ErrUnavailable (503).
type TokenExchangeSource struct {
	cache  *Cache
	route  string
	te     TokenExchange
	prefix [sha256.Size]byte // the SHA-256 of everything but the caller: hashed once
}

// NewTokenExchangeSource returns route's token-exchange source, or what is wrong with te
// (checked once here). te must not be modified after.
func NewTokenExchangeSource(c *Cache, route string, te TokenExchange, opts ...SourceOption) (*TokenExchangeSource, error) {
	if err := te.Validate(c.sourceOptions(opts).allowHTTP); err != nil {
		return nil, err
	}
	var b []byte
	b = appendField(b, keyVersion)
	b = appendField(b, ModeTokenExchange)
	b = appendField(b, route)
	b = appendField(b, te.TokenURL)
	b = appendField(b, te.ClientID)
	b = appendField(b, te.Audience)
	b = appendField(b, te.Resource)
	b = appendCount(b, len(te.Scopes)) // in order: the order is what goes on the wire
	for _, s := range te.Scopes {
		b = appendField(b, s)
	}
	b = appendField(b, te.subjectType())
	b = appendField(b, te.requestedType())
	return &TokenExchangeSource{cache: c, route: route, te: te, prefix: sha256.Sum256(b)}, nil
}

// Token returns the token exchanged for c's Bearer token, exchanging it on a miss.
func (s *TokenExchangeSource) Token(ctx context.Context, c Caller) (Token, error) {
	if c.Bearer == "" {
		// Only a jwt route has one; validation refuses token_exchange elsewhere.
		return Token{}, &Error{Mode: ModeTokenExchange, Reason: ReasonMissingCredentials}
	}
	key := s.key(c)
	if tok, ok := s.cache.fresh(key); ok {
		return tok, nil
	}
	// A token capped at the caller's exp is served until then: a refresh would only get one
	// with the same end (RFC 8693 leaves the issued token's lifetime to the IdP; ours is bounded
	// by the subject's).
	if tok, ok := s.cache.valid(key); ok && !c.Expiry.IsZero() && !tok.Expiry.Before(c.Expiry) {
		return tok, nil
	}
	return s.exchange(ctx, c, key)
}

//go:noinline
func (s *TokenExchangeSource) exchange(ctx context.Context, c Caller, key Key) (Token, error) {
	return s.cache.get(ctx, &request{
		route:   s.route,
		mode:    ModeTokenExchange,
		key:     key,
		timeout: orDefaultDuration(s.te.Timeout, defaults.UpstreamTimeout),
		shared:  true,
		acquire: func(ctx context.Context) (Token, error) {
			return s.cache.requestExchange(ctx, s.te, c.Bearer, c.Expiry)
		},
	})
}

func orDefaultDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// key is the cache key of c's exchanged token: the source's prefix and the caller token's
// SHA-256 (never the token itself).
func (s *TokenExchangeSource) key(c Caller) Key {
	sum := c.BearerSum
	if sum == ([sha256.Size]byte{}) {
		sum = sha256.Sum256([]byte(c.Bearer))
	}
	var stack [96]byte
	b := appendField(stack[:0], string(s.prefix[:]))
	b = appendField(b, string(sum[:]))
	k := sha256.Sum256(b)
	return Key(k[:])
}

// refusalCodes are the RFC 6749 §5.2 / RFC 8693 §2.2.2 / RFC 8707 §2 codes with which an IdP
// refuses to exchange this subject token for this target: the caller's token is not good for
// the upstream (403), not a failure of tokengate or the IdP.
var refusalCodes = map[string]bool{
	"invalid_grant":       true,
	"invalid_target":      true,
	"invalid_scope":       true,
	"unauthorized_client": true,
	"invalid_request":     true,
}

// requestExchange makes one RFC 8693 §2.1 request for subject and parses its answer. The
// token's lifetime is measured from the start of the request and ends no later than notAfter
// (the subject's exp) when that is set.
func (c *Cache) requestExchange(ctx context.Context, te TokenExchange, subject string, notAfter time.Time) (Token, error) {
	start := c.now()
	if !notAfter.IsZero() && !start.Before(notAfter) {
		// The subject expired (it was accepted within the provider's clock skew): nothing
		// exchanged for it may be used.
		return Token{}, &Error{Mode: ModeTokenExchange, Reason: ReasonSubjectExpired, refused: true}
	}
	form := url.Values{
		"grant_type":           {GrantTypeTokenExchange},
		"subject_token":        {subject},
		"subject_token_type":   {te.subjectType()},
		"requested_token_type": {te.requestedType()},
	}
	if te.Audience != "" {
		form.Set("audience", te.Audience)
	}
	if te.Resource != "" {
		form.Set("resource", te.Resource)
	}
	if len(te.Scopes) > 0 {
		form.Set("scope", strings.Join(te.Scopes, " "))
	}
	header := http.Header{}
	if err := te.Auth.Authenticate(ctx, te.TokenURL, form, header); err != nil {
		return Token{}, &Error{Mode: ModeTokenExchange, Reason: ReasonClientAuth}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, te.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return Token{}, &Error{Mode: ModeTokenExchange, Reason: ReasonInvalidConfig}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.httpClient(te.Auth).Do(req)
	if err != nil {
		return Token{}, transportError(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return Token{}, transportError(ctx, err)
	}
	ans, perr := ParseExchangeAnswer(resp.StatusCode, resp.Header.Get("Content-Type"), body, te.requestedType())
	if perr != nil {
		if perr.Status == http.StatusTooManyRequests || perr.Status == http.StatusServiceUnavailable {
			perr.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
		return Token{}, perr
	}
	ttl := ans.ExpiresIn
	if ttl == 0 {
		ttl = orDefaultDuration(te.DefaultTTL, defaults.UpstreamTokenTTL)
	}
	exp := start.Add(ttl)
	if !notAfter.IsZero() && notAfter.Before(exp) {
		exp = notAfter
	}
	return Token{AccessToken: ans.AccessToken, IssuedAt: start, Expiry: exp}, nil
}

// transportError classifies an error of the HTTP exchange itself (no answer, or one cut short).
func transportError(ctx context.Context, err error) *Error {
	e := &Error{Mode: ModeTokenExchange}
	var ne net.Error
	switch {
	case errors.Is(err, errTooLarge):
		e.Reason = ReasonTooLarge
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		e.Reason = ReasonTimeout
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		e.Reason = ReasonCanceled
	default:
		e.Reason = ReasonConnection
	}
	return e
}

// ExchangeAnswer is a successful RFC 8693 §2.2.1 answer as tokengate uses it.
type ExchangeAnswer struct {
	AccessToken string
	ExpiresIn   time.Duration // 0 when the answer has none
}

// ParseExchangeAnswer reads a token endpoint's answer to a token-exchange request. A 200 must
// be a JSON object (RFC 8693 §2.2.1) with a VSCHAR access_token, token_type Bearer (any case)
// or N_A, issued_token_type equal to requested, and expires_in, when present, a positive
// number. A 400 whose JSON error is one of refusalCodes is a refusal (matching
// ErrExchangeRefused); any other answer is an IdP failure (ErrUnavailable). The returned
// error never quotes the body: at most the status and a sanitised error code.
func ParseExchangeAnswer(status int, contentType string, body []byte, requested string) (ExchangeAnswer, *Error) {
	fail := func(reason string) (ExchangeAnswer, *Error) {
		return ExchangeAnswer{}, &Error{Mode: ModeTokenExchange, Reason: reason, Status: status}
	}
	isJSON := false
	if mt, _, err := mime.ParseMediaType(contentType); err == nil {
		isJSON = mt == "application/json" || strings.HasSuffix(mt, "+json")
	}
	if status != http.StatusOK {
		e := &Error{Mode: ModeTokenExchange, Reason: ReasonIdPError, Status: status}
		var oe struct {
			Error any `json:"error"`
		}
		if isJSON && json.Unmarshal(body, &oe) == nil {
			code, _ := oe.Error.(string)
			e.Code = sanitizeCode(code)
			switch {
			case status == http.StatusBadRequest && refusalCodes[code]:
				e.Reason, e.refused = ReasonExchangeRefused, true
			case status == http.StatusUnauthorized || status == http.StatusBadRequest && code == "invalid_client":
				e.Reason, e.rejected = ReasonRejected, true // tokengate's own client: 503
			}
		} else if status == http.StatusUnauthorized {
			e.Reason, e.rejected = ReasonRejected, true
		}
		return ExchangeAnswer{}, e
	}
	if !isJSON {
		return fail(ReasonInvalidResponse)
	}
	var raw struct {
		AccessToken     *string         `json:"access_token"`
		TokenType       *string         `json:"token_type"`
		IssuedTokenType *string         `json:"issued_token_type"`
		ExpiresIn       json.RawMessage `json:"expires_in"`
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&raw); err != nil || d.More() {
		return fail(ReasonInvalidResponse)
	}
	if _, err := d.Token(); err != io.EOF {
		return fail(ReasonInvalidResponse) // trailing data after the object
	}
	at := raw.AccessToken
	if at == nil || *at == "" || len(*at) > MaxAccessTokenBytes || !isVSChars(*at) {
		// RFC 6749 Appendix A.12: access-token = 1*VSCHAR; it goes into a header.
		return fail(ReasonInvalidResponse)
	}
	// RFC 8693 §2.2.1: token_type is REQUIRED; N_A when the token is not an access token.
	if raw.TokenType == nil || !strings.EqualFold(*raw.TokenType, "bearer") && *raw.TokenType != "N_A" {
		return fail(ReasonBadTokenType)
	}
	// RFC 8693 §2.2.1: issued_token_type is REQUIRED; another type than asked for may not be
	// usable as the upstream's Bearer token.
	if raw.IssuedTokenType == nil || *raw.IssuedTokenType != requested {
		return fail(ReasonBadIssuedType)
	}
	var ans ExchangeAnswer
	ans.AccessToken = *at
	if len(raw.ExpiresIn) > 0 && string(raw.ExpiresIn) != "null" {
		var v any
		dn := json.NewDecoder(bytes.NewReader(raw.ExpiresIn))
		dn.UseNumber()
		if dn.Decode(&v) != nil {
			return fail(ReasonBadExpiresIn)
		}
		ttl, ok := expiresIn(v, 0)
		if !ok || ttl == 0 {
			return fail(ReasonBadExpiresIn)
		}
		ans.ExpiresIn = ttl
	}
	return ans, nil
}
