package extauthz

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/tokengate/tokengate/internal/upstream"
)

// AuthMode is how a route authenticates its caller (SPEC section 3, `authenticate`).
type AuthMode int

const (
	AuthJWT               AuthMode = iota + 1 // a Bearer JWT of a trusted provider
	AuthClientCredentials                     // the caller's Basic client_id:secret, exchanged at an IdP
	AuthNone                                  // no authentication
)

// UpstreamMode is which credential goes upstream (SPEC section 3, `upstream`).
type UpstreamMode int

const (
	UpstreamMint        UpstreamMode = iota + 1 // a token tokengate signs
	UpstreamFetch                               // a token fetched with tokengate's own credentials
	UpstreamExchanged                           // the token obtained for the caller's credentials
	UpstreamPassthrough                         // the caller's own Authorization, untouched
	UpstreamRemove                              // no Authorization upstream
)

func (m UpstreamMode) String() string {
	switch m {
	case UpstreamMint:
		return "mint"
	case UpstreamFetch:
		return "fetch"
	case UpstreamExchanged:
		return "exchange"
	case UpstreamPassthrough:
		return "passthrough"
	case UpstreamRemove:
		return "remove"
	}
	return "unknown"
}

// Route is one configured route, already validated by the config package.
type Route struct {
	Name string

	// Match (SPEC section 4); empty fields match anything.
	Authority  string   // exact host, or "*.example.com"
	PathPrefix string   // e.g. "/api/"
	Methods    []string // upper-case

	Auth      AuthMode
	Providers []string       // AuthJWT: provider names
	Scopes    []string       // AuthJWT: all required
	Claims    map[string]any // AuthJWT: each must equal (compared as text, as forward_claims renders them)
	// AuthClientCredentials: where the caller's credentials are exchanged; ClientID and
	// ClientSecret are filled per request from the caller's Basic header.
	Exchange upstream.ClientCredentials

	Upstream UpstreamMode
	Mint     MintSpec                   // UpstreamMint
	Fetch    upstream.ClientCredentials // UpstreamFetch

	// ForwardClaims maps a request header (lower-case) to the claim it carries.
	ForwardClaims map[string]string
}

// MintSpec is the token a `mint` route signs for its upstream.
type MintSpec struct {
	Audience string
	Scopes   []string
	TTL      time.Duration
	Timeout  time.Duration // bound on a Check's wait for the mint (a cache miss signs in-process)
}

// routeTable selects routes by name (Envoy's context_extensions) or by match, in file order.
type routeTable struct {
	ordered []*Route
	byName  map[string]*Route
}

func newRouteTable(routes []Route) (*routeTable, error) {
	t := &routeTable{byName: make(map[string]*Route, len(routes))}
	for i := range routes {
		r := &routes[i]
		if _, dup := t.byName[r.Name]; dup {
			return nil, fmt.Errorf("route %q is defined twice", r.Name)
		}
		t.byName[r.Name] = r
		t.ordered = append(t.ordered, r)
	}
	return t, nil
}

// selectRoute implements SPEC section 4. named is true when the request named a route.
func (t *routeTable) selectRoute(name, authority, path, method string) (r *Route, named bool) {
	if name != "" {
		return t.byName[name], true
	}
	host := hostOnly(authority)
	for _, r := range t.ordered {
		if r.matches(host, path, method) {
			return r, false
		}
	}
	return nil, false
}

func (r *Route) matches(host, path, method string) bool {
	if r.Authority != "" && !authorityMatches(r.Authority, host) {
		return false
	}
	if r.PathPrefix != "" && !strings.HasPrefix(path, r.PathPrefix) {
		return false
	}
	if len(r.Methods) > 0 {
		ok := false
		for _, m := range r.Methods {
			if strings.EqualFold(m, method) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// authorityMatches compares host names case-insensitively; "*.example.com" matches any name
// ending in ".example.com" but not "example.com" itself.
func authorityMatches(pattern, host string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return len(host) > len(suffix) && strings.EqualFold(host[len(host)-len(suffix):], suffix)
	}
	return strings.EqualFold(pattern, host)
}

// hostOnly strips the port from an authority ("a.example.com:8443", "[::1]:80").
func hostOnly(authority string) string {
	if host, _, err := net.SplitHostPort(authority); err == nil {
		return host
	}
	return strings.TrimSuffix(strings.TrimPrefix(authority, "["), "]")
}

// normalPath reports whether path (its part before '?') is already in the normal form a proxy
// or upstream would reduce it to: no dot segments, no empty segments, no backslashes and no
// percent-encoded dots, slashes or backslashes. Envoy sends normalized paths when its
// http_connection_manager sets normalize_path and merge_slashes; forward-auth gateways send the
// client's URI as it came.
func normalPath(path string) bool {
	p, _, _ := strings.Cut(path, "?")
	if p == "" {
		return true
	}
	if p[0] != '/' || strings.Contains(p, "//") || strings.Contains(p, "\\") {
		return false
	}
	lower := strings.ToLower(p)
	for _, enc := range []string{"%2e", "%2f", "%5c"} {
		if strings.Contains(lower, enc) {
			return false
		}
	}
	for rest := p[1:]; ; {
		seg, tail, more := strings.Cut(rest, "/")
		if seg == "." || seg == ".." {
			return false
		}
		if !more {
			return true
		}
		rest = tail
	}
}
