// Package httpx holds the rules every outbound HTTP call of tokengate follows: which URLs it
// may fetch from or send credentials to (CheckURL, IsLoopback), and the client that never
// follows a redirect (NoRedirect, NewClient). The configuration, the JWKS fetcher and the
// upstream token requests all use these, so the rules cannot drift apart.
package httpx

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// URL problems reported by CheckURL. Their texts never quote the URL: it could carry a secret
// in its user-info or query. CheckURL joins every problem it finds (errors.Join), so a caller
// can report them all at once and test for each with errors.Is.
var (
	// ErrInvalidURL: not an absolute http(s) URL with a host.
	ErrInvalidURL = errors.New("invalid URL")
	// ErrInsecureURL: plain http to a host that is not loopback (without allowHTTP), or a
	// scheme other than http and https.
	ErrInsecureURL = errors.New("URL must be https (http only for loopback hosts unless allowed)")
	// ErrUserinfo: the URL carries credentials (RFC 3986 §3.2.1 user-info), which would be sent
	// as Basic authentication and logged with the URL.
	ErrUserinfo = errors.New("URL must not contain credentials")
	// ErrFragment: the URL has a fragment (RFC 3986 §3.5), which is never sent to a server, so
	// its presence can only be a mistake (RFC 6749 §3.2 forbids one in a token endpoint URL).
	ErrFragment = errors.New("URL must not have a fragment")
)

// CheckURL parses raw as a URL tokengate fetches from or sends credentials to (a JWKS, a
// discovery document, a token endpoint) and checks it:
//   - absolute, with a scheme and a host name (not opaque as in "https:host");
//   - https; plain http only when the host is loopback (IsLoopback) or allowHTTP is set
//     (server.allow_http_urls): keys or tokens fetched over plain HTTP from a remote host could
//     be read or substituted by anyone on the path (RFC 8725 §3.10, RFC 6749 §3.2 "MUST use TLS");
//   - no user-info (ErrUserinfo) and no fragment, not even an empty one (ErrFragment).
//
// Every problem found is returned, joined; the *url.URL is nil whenever the error is not.
func CheckURL(raw string, allowHTTP bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return nil, ErrInvalidURL
	}
	var errs []error
	switch u.Scheme {
	case "https":
	case "http":
		if !allowHTTP && !IsLoopback(u.Hostname()) {
			errs = append(errs, ErrInsecureURL)
		}
	default:
		errs = append(errs, ErrInsecureURL)
	}
	if u.User != nil {
		errs = append(errs, ErrUserinfo)
	}
	// url.Parse drops an empty fragment ("https://idp/jwks#"), so look at the raw text too.
	if u.Fragment != "" || strings.Contains(raw, "#") {
		errs = append(errs, ErrFragment)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return u, nil
}

// IsLoopback reports whether host (a URL's Hostname(): no port, no brackets) names the local
// machine: "localhost" in any case, or an address in 127.0.0.0/8 or ::1. Other names, even if
// they resolve to a loopback address, are not trusted: resolution can change.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// NoRedirect returns a copy of c (nil: a zero client, which uses http.DefaultTransport) that
// never follows a redirect: a 3xx is returned to the caller as the response, which every caller
// treats as a failure (a JWKS answer must be 200; x/oauth2 reports a 3xx token answer as an
// error). A token endpoint or JWKS that redirects is misconfigured or hijacked, and following
// it could send credentials elsewhere or move the fetch to plain HTTP. c itself is not modified.
func NoRedirect(c *http.Client) *http.Client {
	var out http.Client
	if c != nil {
		out = *c
	}
	out.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &out
}

// NewClient is the default client for JWKS and token endpoints: TLS verification always on
// (TLS 1.2 at least), bounded dials, handshakes and waits for response headers, an overall
// backstop timeout, and no redirects (NoRedirect).
func NewClient() *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return NoRedirect(&http.Client{Transport: tr, Timeout: 30 * time.Second})
}
