package extauthz

import (
	"fmt"
	"sync/atomic"

	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/upstream"
)

// AuthMode is how a route authenticates its caller (`authenticate`, docs/configuration.md#routes).
type AuthMode int

const (
	AuthJWT               AuthMode = iota + 1 // a Bearer JWT of a trusted provider
	AuthClientCredentials                     // the caller's Basic client_id:secret, exchanged at an IdP
	AuthNone                                  // no authentication
)

// UpstreamMode is what the authorizer does with Authorization on an allowed request (`upstream`,
// docs/configuration.md#routes, docs/upstream.md). Which token replaces it is the route's Source's
// business: the modes of the configuration that obtain a token (mint, fetch, exchanged, ...) are
// all UpstreamToken.
type UpstreamMode int

const (
	UpstreamToken       UpstreamMode = iota + 1 // Route.Source's token replaces Authorization
	UpstreamPassthrough                         // the caller's own Authorization, untouched
	UpstreamRemove                              // no Authorization upstream
)

// Route is one configured route, already validated by the config package.
type Route struct {
	Name string

	// Match (docs/decisions.md#route-selection); empty fields match anything.
	Authority  string   // exact host, or "*.example.com"
	PathPrefix string   // e.g. "/api/"
	Methods    []string // upper-case
	// IgnoreCase compares PathPrefix in any ASCII letter case (match.ignore_case), for
	// upstreams that resolve paths case-insensitively.
	IgnoreCase bool

	Auth      AuthMode
	Providers []string       // AuthJWT: provider names
	Scopes    []string       // AuthJWT: all required
	Claims    map[string]any // AuthJWT: each must equal (compared as text, as forward_claims renders them)
	// ClientsSelf (AuthClientCredentials): verify the caller against the built-in issuer's
	// clients (Deps.Clients).
	ClientsSelf bool
	// Exchange (AuthClientCredentials without ClientsSelf) verifies the caller by obtaining a
	// token for its Basic credentials at the route's token_url (upstream.ExchangeSource): a
	// refusal (upstream.ErrRejected alone) is 401 invalid_client. The token it obtains is
	// upstream.Caller.Verified for the route's Source.
	Exchange upstream.Source

	Upstream UpstreamMode
	Source   upstream.Source // UpstreamToken: the credential that goes upstream

	// ForwardClaims maps a request header (lower-case) to the claim it carries.
	ForwardClaims map[string]string

	// RequireBinding (AuthJWT) refuses tokens not bound to a proof of possession of this kind:
	// one of the Binding* values, "" is BindingNone. A provider's Binding.Require applies too.
	RequireBinding string
}

// routeTable selects routes by name (Envoy's context_extensions) or by match, in file order.
type routeTable struct {
	ordered []*compiledRoute
	byName  map[string]*compiledRoute
}

// compiledRoute is a route with what every Check of it needs computed once: its match in normal
// form (normalize.go), its metric series, its binding settings and its last upstream header.
type compiledRoute struct {
	*Route
	authority string // normalizeAuthorityPattern(Authority)
	prefix    string // percentDecode(normalizePrefix(PathPrefix))

	checks *metrics.RouteChecks // tokengate_check_total{route} resolved once (issue 11)
	routeBinding
	// upstreamHeader is the Authorization header built for the route's last upstream token: a
	// fetch route's token is the same for every caller, so its header (and its gRPC form) is
	// built once per token rather than once per Check.
	upstreamHeader atomic.Pointer[upstreamHeader]
}

func newRouteTable(routes []Route) (*routeTable, error) {
	t := &routeTable{byName: make(map[string]*compiledRoute, len(routes))}
	for i := range routes {
		r := &routes[i]
		if _, dup := t.byName[r.Name]; dup {
			return nil, fmt.Errorf("route %q is defined twice", r.Name)
		}
		c := &compiledRoute{Route: r, prefix: percentDecode(normalizePrefix(r.PathPrefix))}
		if r.Authority != "" {
			c.authority = normalizeAuthorityPattern(r.Authority)
		}
		t.byName[r.Name] = c
		t.ordered = append(t.ordered, c)
	}
	return t, nil
}

// selectRoute implements route selection (docs/decisions.md#route-selection). path must already be
// in normal form (normalizePath); prefixes are compared on its decoded bytes, and the authority is
// normalized here. named is true when the request named a route.
func (t *routeTable) selectRoute(name, authority, path, method string) (r *Route, named bool) {
	c, named := t.selectCompiled(name, authority, path, method)
	if c == nil {
		return nil, named
	}
	return c.Route, named
}

// selectCompiled is selectRoute returning the compiled route.
func (t *routeTable) selectCompiled(name, authority, path, method string) (r *compiledRoute, named bool) {
	if name != "" {
		return t.byName[name], true
	}
	host, ok := normalizeAuthority(authority)
	if !ok {
		return nil, false // not a host: fits no route, not even one that ignores the host
	}
	decoded := percentDecode(path) // what the upstream resolves; prefixes are compared on it
	for _, c := range t.ordered {
		if c.matches(host, decoded, method) {
			return c, false
		}
	}
	return nil, false
}

func (c *compiledRoute) matches(host, path, method string) bool {
	if c.authority != "" && !authorityMatches(c.authority, host) {
		return false
	}
	if c.prefix != "" && !hasPathPrefix(path, c.prefix, c.IgnoreCase) {
		return false
	}
	if len(c.Methods) > 0 {
		ok := false
		for _, m := range c.Methods {
			if asciiFold(method, m) { // ASCII only: "POſT" is not POST (strings.EqualFold says it is)
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

// setMetrics resolves each route's metric series once.
func (t *routeTable) setMetrics(m *metrics.Metrics) {
	for _, c := range t.ordered {
		c.checks = m.RouteChecks(c.Name)
	}
}
