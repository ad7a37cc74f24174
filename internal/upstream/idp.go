package upstream

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/tokengate/tokengate/internal/httpx"
)

// newHTTPClient returns the client used for token requests: TLS verification on (TLS 1.2+),
// no redirect followed (httpx.NoRedirect: a 3xx is answered as is, which x/oauth2 reports as an
// error; a token endpoint that redirects could send our credentials elsewhere), and every
// response body capped at maxBytes. base may be nil (a fresh transport) or the caller's client, whose transport is
// reused but whose redirect policy is replaced.
func newHTTPClient(base *http.Client, maxBytes int64) *http.Client {
	var rt http.RoundTripper
	timeout := time.Duration(0)
	if base != nil {
		rt = base.Transport
		timeout = base.Timeout
	}
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		t.MaxIdleConnsPerHost = 16
		t.ResponseHeaderTimeout = time.Minute
		rt = t
	} else if t, ok := rt.(*http.Transport); ok && t.TLSClientConfig != nil && t.TLSClientConfig.InsecureSkipVerify {
		// TLS verification is never off for a token endpoint: the request carries a secret.
		t = t.Clone()
		t.TLSClientConfig.InsecureSkipVerify = false
		rt = t
	}
	if timeout == 0 {
		timeout = time.Minute // a backstop; every request also carries a context deadline
	}
	return httpx.NoRedirect(&http.Client{Transport: &capTransport{base: rt, max: maxBytes}, Timeout: timeout})
}

// probeKey carries a *probe in a request's context so the transport can tell the request's
// owner that the response was over the size cap (x/oauth2 flattens body-read errors to text).
type probeKey struct{}

type probe struct{ tooLarge atomic.Bool }

var errTooLarge = errors.New("upstream: token response too large")

// capTransport refuses responses larger than max bytes.
type capTransport struct {
	base http.RoundTripper
	max  int64
}

func (t *capTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	p, _ := req.Context().Value(probeKey{}).(*probe)
	if resp.ContentLength > t.max {
		resp.Body.Close()
		if p != nil {
			p.tooLarge.Store(true)
		}
		return nil, errTooLarge
	}
	resp.Body = &capBody{rc: resp.Body, left: t.max, probe: p}
	return resp, nil
}

type capBody struct {
	rc    io.ReadCloser
	left  int64
	probe *probe
}

func (b *capBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Anything beyond the cap makes the whole response invalid.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			if b.probe != nil {
				b.probe.tooLarge.Store(true)
			}
			return 0, errTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *capBody) Close() error { return b.rc.Close() }

// requestToken asks the IdP for one token with x/oauth2's clientcredentials (RFC 6749 §4.4).
// The returned Token's lifetime is measured on c's clock from the start of the request.
//
// cc has been checked once, where its source was built (NewFetchSource, NewExchangeSource) or
// at the entry of Fetch and Exchange: the URL policy is not re-checked per request.
func (c *Cache) requestToken(ctx context.Context, mode string, cc ClientCredentials) (Token, error) {
	params := url.Values{}
	for k, v := range cc.EndpointParams {
		params[k] = append([]string(nil), v...)
	}
	if cc.Audience != "" {
		params.Set("audience", cc.Audience)
	}
	style := oauth2.AuthStyleInHeader // RFC 6749 §2.3.1: servers MUST support Basic
	if cc.AuthStyle == AuthStyleBody {
		style = oauth2.AuthStyleInParams
	}
	secret := cc.ClientSecret
	if cc.Auth != nil {
		// RFC 7523 §2.2: the assertion travels in the form with client_id and no secret;
		// x/oauth2 has no such method, so it goes in as endpoint parameters with
		// AuthStyleInParams (which sends client_id and omits an empty secret). A fresh assertion
		// (or a fresh read of the assertion file) for every request.
		if err := cc.Auth.Authenticate(ctx, cc.TokenURL, params, http.Header{}); err != nil {
			return Token{}, &Error{Mode: mode, Reason: ReasonClientAuth}
		}
		style, secret = oauth2.AuthStyleInParams, ""
	}
	cfg := clientcredentials.Config{
		ClientID:       cc.ClientID,
		ClientSecret:   secret,
		TokenURL:       cc.TokenURL,
		Scopes:         cc.Scopes,
		EndpointParams: params,
		AuthStyle:      style, // explicit: AutoDetect would retry a refused request with the other style
	}
	p := &probe{}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, c.httpClient(cc.Auth))
	ctx = context.WithValue(ctx, probeKey{}, p)
	start := c.now()
	// Config.Token builds a fresh single-use token source per call: no ReuseTokenSource shared
	// between callers (whose mutex blocks every caller during a refresh), and its Expiry (zero
	// meaning "never expires") is ignored: we read expires_in ourselves.
	t, err := cfg.Token(ctx)
	if err != nil {
		return Token{}, classify(ctx, mode, err, p)
	}
	if tt := t.TokenType; tt != "" && !strings.EqualFold(tt, "bearer") {
		// RFC 6749 §7.1: we only know how to use Bearer tokens (RFC 6750). A missing token_type
		// is taken as Bearer, as x/oauth2 and the products we replace do.
		return Token{}, &Error{Mode: mode, Reason: ReasonBadTokenType}
	}
	if t.AccessToken == "" || len(t.AccessToken) > MaxAccessTokenBytes || !isVSChars(t.AccessToken) {
		// RFC 6749 Appendix A.12: access-token = 1*VSCHAR. Anything else could break or inject
		// into the header we write it into.
		return Token{}, &Error{Mode: mode, Reason: ReasonInvalidResponse}
	}
	ttl, ok := expiresIn(t.Extra("expires_in"), cc.defaultTTL())
	if !ok {
		// 0, negative or unparsable: such a token cannot be cached, and handing out a token the
		// IdP says is already expired would only fail upstream. Treated as a failed request (with
		// backoff), so a misbehaving IdP is not called once per request either.
		return Token{}, &Error{Mode: mode, Reason: ReasonBadExpiresIn}
	}
	return Token{AccessToken: t.AccessToken, IssuedAt: start, Expiry: start.Add(ttl)}, nil
}

// expiresIn interprets the raw "expires_in" member (RFC 6749 §5.1): a JSON number, a numeric
// string (PayPal and others), or a form value; absent means def. ok is false for 0, negative,
// non-finite or non-numeric values.
func expiresIn(v any, def time.Duration) (time.Duration, bool) {
	var secs float64
	switch x := v.(type) {
	case nil:
		return def, true
	case float64:
		secs = x
	case int64:
		secs = float64(x)
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return 0, false
		}
		secs = f
	case string:
		s := strings.TrimSpace(x)
		if s == "" {
			return def, true
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, false
		}
		secs = f
	default:
		return 0, false
	}
	if math.IsNaN(secs) || math.IsInf(secs, 0) || secs < 1 {
		return 0, false
	}
	if secs > math.MaxInt32 {
		secs = math.MaxInt32
	}
	return time.Duration(math.Floor(secs)) * time.Second, true
}

// rejectCodes are the RFC 6749 §5.2 codes that mean "these credentials will not get a token".
var rejectCodes = map[string]bool{
	"invalid_client":      true,
	"unauthorized_client": true,
	"invalid_grant":       true,
	"invalid_scope":       true,
	"access_denied":       true,
}

// classify turns an x/oauth2 or transport error into an *Error that keeps only the status, the
// sanitised OAuth error code and Retry-After. x/oauth2's RetrieveError carries the response body
// (and its Error() prints it when there is no error code), so it never leaves this function.
func classify(ctx context.Context, mode string, err error, p *probe) *Error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		e := &Error{Mode: mode, Reason: ReasonIdPError, Code: sanitizeCode(re.ErrorCode)}
		if re.Response != nil {
			e.Status = re.Response.StatusCode
			if e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable {
				e.RetryAfter = parseRetryAfter(re.Response.Header.Get("Retry-After"), time.Now())
			}
		}
		if e.Status == http.StatusUnauthorized || ((e.Status == http.StatusBadRequest || e.Status == http.StatusForbidden || e.Status/100 == 2) && rejectCodes[re.ErrorCode]) {
			e.rejected = true
			e.Reason = ReasonRejected
		}
		return e
	}
	switch {
	case p.tooLarge.Load() || errors.Is(err, errTooLarge):
		return &Error{Mode: mode, Reason: ReasonTooLarge}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Mode: mode, Reason: ReasonTimeout}
	case errors.Is(err, context.Canceled):
		if ctx.Err() != nil {
			return &Error{Mode: mode, Reason: ReasonCanceled}
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &Error{Mode: mode, Reason: ReasonTimeout}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return &Error{Mode: mode, Reason: ReasonConnection}
	}
	// JSON that does not parse, a missing access_token, ...
	return &Error{Mode: mode, Reason: ReasonInvalidResponse}
}

// parseRetryAfter reads an RFC 9110 §10.2.3 Retry-After: delay-seconds or an HTTP-date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	if d <= 0 {
		return 0
	}
	return min(d, maxRetryAfter)
}
