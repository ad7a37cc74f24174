package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tokengate/tokengate/internal/httpx"
)

// Fetch failures. Their texts are fixed and short so that they can be logged as a reason: they
// never carry a response body, a URL with credentials or key material.
var (
	ErrTooLarge       = errors.New("response body too large")
	ErrStatus         = errors.New("unexpected HTTP status")
	ErrTimeout        = errors.New("request timed out")
	ErrConnection     = errors.New("request failed")
	ErrDiscovery      = errors.New("invalid discovery document")
	ErrIssuerMismatch = errors.New("discovery issuer does not match the configured issuer")
	ErrInsecureTLS    = errors.New("HTTP client must verify TLS certificates")
	ErrInvalidJWKS    = errors.New("invalid JWK Set")
)

const (
	discoveryPath      = "/.well-known/openid-configuration"
	defaultMaxBody     = 1 << 20
	maxResponseHeaders = 64 << 10
)

// newClient returns a copy of base (or a default client) that never follows redirects
// (httpx.NoRedirect: a redirect could move the fetch to another host or to plain HTTP; an IdP
// that redirects its jwks_uri must be configured with the final URL, and the 3xx answer fails
// as ErrStatus) and refuses to run with certificate verification disabled. The caller's client
// is not modified.
func newClient(base *http.Client) (*http.Client, error) {
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxResponseHeaderBytes = maxResponseHeaders
		t.ResponseHeaderTimeout = 10 * time.Second
		base = &http.Client{Transport: t}
	}
	if t, ok := base.Transport.(*http.Transport); ok && t.TLSClientConfig != nil && t.TLSClientConfig.InsecureSkipVerify {
		return nil, ErrInsecureTLS
	}
	return httpx.NoRedirect(base), nil
}

// get fetches u and returns its body, read up to maxBody bytes (a larger body is an error and
// is not read further, so memory stays bounded), and the max-age of its Cache-Control header.
func get(ctx context.Context, c *http.Client, u string, accept string, maxBody int64) ([]byte, *time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, httpx.ErrInvalidURL
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", "tokengate")
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, classify(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%w %d", ErrStatus, resp.StatusCode)
	}
	if resp.ContentLength > maxBody {
		return nil, nil, ErrTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, nil, classify(err)
	}
	if int64(len(body)) > maxBody {
		return nil, nil, ErrTooLarge
	}
	return body, maxAge(resp.Header), nil
}

// classify turns a transport error into a fixed reason (url.Error texts hold the URL and
// library wording, which we keep out of logs).
func classify(err error) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return ErrTimeout
	}
	return ErrConnection
}

// maxAge reads max-age from Cache-Control (RFC 9111 §5.2.2.1); no-store and no-cache count as
// zero. nil when the header says nothing about freshness.
func maxAge(h http.Header) *time.Duration {
	var found *time.Duration
	set := func(d time.Duration) {
		if found == nil || d < *found {
			found = &d
		}
	}
	for _, line := range h.Values("Cache-Control") {
		for _, dir := range strings.Split(line, ",") {
			dir = strings.ToLower(strings.TrimSpace(dir))
			switch {
			case dir == "no-store" || dir == "no-cache":
				set(0)
			case strings.HasPrefix(dir, "max-age="):
				v := strings.Trim(strings.TrimPrefix(dir, "max-age="), `"`)
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 0 {
					set(0) // an invalid max-age means stale (RFC 9111 §4.2.1)
					continue
				}
				if n > int64(365*24*time.Hour/time.Second) {
					n = int64(365 * 24 * time.Hour / time.Second)
				}
				set(time.Duration(n) * time.Second)
			}
		}
	}
	return found
}

// discover reads the OpenID Provider metadata (OpenID Connect Discovery 1.0 §4) of issuer and
// returns its jwks_uri. The document's issuer must equal ours exactly (§4.3), or keys of
// another issuer could be trusted for this one.
func discover(ctx context.Context, c *http.Client, issuer string, allowHTTP bool, maxBody int64) (string, error) {
	u := strings.TrimSuffix(issuer, "/") + discoveryPath
	body, _, err := get(ctx, c, u, "application/json", maxBody)
	if err != nil {
		return "", err
	}
	var doc struct {
		Issuer  *string `json:"issuer"`
		JWKSURI *string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.Issuer == nil || doc.JWKSURI == nil {
		return "", ErrDiscovery
	}
	if *doc.Issuer != issuer {
		return "", ErrIssuerMismatch
	}
	if _, err := httpx.CheckURL(*doc.JWKSURI, allowHTTP); err != nil {
		return "", fmt.Errorf("%w: jwks_uri: %w", ErrDiscovery, err)
	}
	return *doc.JWKSURI, nil
}
