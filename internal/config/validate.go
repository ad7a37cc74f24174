package config

import (
	"errors"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokengate/tokengate/internal/httpx"
	"github.com/tokengate/tokengate/internal/jose"
)

// Bounds of numeric settings.
const (
	minMaxTokenBytes   = 1024
	maxMaxTokenBytes   = 65536
	maxCacheEntries    = 10_000_000
	maxClockSkew       = 5 * time.Minute
	minRefreshInterval = 10 * time.Second
	maxTimeout         = time.Minute
	maxNameLen         = 128
	maxKidLen          = 256
)

// reservedParams are form fields tokengate sets itself in a client-credentials request
// (RFC 6749 section 4.4.2); endpoint_params may not replace them.
var reservedParams = setOf("grant_type", "client_id", "client_secret", "scope", "audience")

// forbiddenHeaders may not be set from a claim: they carry credentials, select the virtual host,
// or frame the message (a claim in content-length or transfer-encoding would be request
// smuggling), or are hop-by-hop (RFC 9110 section 7.6.1).
var forbiddenHeaders = setOf("authorization", "proxy-authorization", "host", "content-length",
	"content-type", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade",
	"expect", "proxy-connection")

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

func setOf(s ...string) map[string]bool {
	m := make(map[string]bool, len(s))
	for _, v := range s {
		m[v] = true
	}
	return m
}

// validator checks a decoded, defaulted configuration.
type validator struct {
	cfg *Config
	p   *problems
}

func validate(cfg *Config, p *problems) {
	v := &validator{cfg: cfg, p: p}
	v.server()
	if cfg.Issuer != nil {
		v.issuer(cfg.Issuer)
	}
	v.providers()
	v.routes()
	v.cache()
}

func (v *validator) add(path, format string, args ...any) { v.p.add(path, format, args...) }

func (v *validator) server() {
	s := &v.cfg.Server
	addrs := []struct{ path, addr string }{
		{"server.grpc_addr", s.GRPCAddr}, {"server.http_addr", s.HTTPAddr},
		{"server.authz_addr", s.AuthzAddr}, {"server.metrics_addr", s.MetricsAddr},
	}
	seen := map[string]string{}
	for i, a := range addrs {
		if i >= 2 && a.addr == "" {
			continue // authz_addr and metrics_addr are optional
		}
		if !v.listenAddr(a.path, a.addr) || strings.HasSuffix(a.addr, ":0") {
			continue
		}
		if other := seen[a.addr]; other != "" {
			v.add(a.path, "must differ from %s", other)
			continue
		}
		seen[a.addr] = a.path
	}
	if s.MaxTokenBytes < minMaxTokenBytes || s.MaxTokenBytes > maxMaxTokenBytes {
		v.add("server.max_token_bytes", "must be between %d and %d", minMaxTokenBytes, maxMaxTokenBytes)
	}
	switch s.ForwardAuthHeaders {
	case ForwardAuthAuto, ForwardAuthXForwarded, ForwardAuthXOriginal, ForwardAuthRequest:
	default:
		v.add("server.forward_auth_headers", "must be one of auto, x-forwarded, x-original, request")
	}
	if s.ClientCertHeader != "" {
		s.ClientCertHeader = strings.ToLower(s.ClientCertHeader)
		if !validToken(s.ClientCertHeader, false) || forbiddenHeaders[s.ClientCertHeader] {
			v.add("server.client_cert_header", "must be a header name other than Authorization, Host and framing headers")
		}
	}
	s.TrustedProxyPrefixes = nil
	for i, t := range s.TrustedProxies {
		pfx, ok := parsePrefix(t)
		if !ok {
			v.add(indexPath("server.trusted_proxies", i), "must be an IP address or a CIDR such as 10.0.0.0/8")
			continue
		}
		s.TrustedProxyPrefixes = append(s.TrustedProxyPrefixes, pfx)
	}
	if g := s.GatewayTLS; g != nil {
		if g.CertFile == "" {
			v.add("server.gateway_tls.cert_file", "is required")
		}
		if g.KeyFile == "" {
			v.add("server.gateway_tls.key_file", "is required")
		}
		if len(g.ClientSANs) > 0 && g.ClientCAFile == "" {
			v.add("server.gateway_tls.client_sans", "requires client_ca_file")
		}
		for i, san := range g.ClientSANs {
			if !validSAN(san) {
				v.add(indexPath("server.gateway_tls.client_sans", i), "must be a DNS name or a URI such as spiffe://cluster.local/ns/NS/sa/SA")
			}
		}
	}
}

// parsePrefix reads a CIDR, or a single address as its /32 or /128.
func parsePrefix(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), true
	}
	return netip.Prefix{}, false
}

// validSAN accepts a DNS name (lower-cased, as certificates compare them) or an absolute URI
// (SPIFFE IDs are URI SANs).
func validSAN(s string) bool {
	if strings.Contains(s, ":") {
		u, err := url.Parse(s)
		return err == nil && u.Scheme != "" && (u.Host != "" || u.Opaque != "") && !hasSpaceOrControl(s)
	}
	return validHostname(strings.ToLower(strings.TrimPrefix(s, "*.")))
}

// listenAddr checks a listen address: host:port with an optional host and a numeric port.
func (v *validator) listenAddr(path, addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil || !validPort(port) {
		v.add(path, "must be host:port, e.g. \":9001\" or \"127.0.0.1:9001\"")
		return false
	}
	return true
}

func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535 && decimal.MatchString(port)
}

func (v *validator) issuer(is *Issuer) {
	if is.IssuerURL == "" {
		v.add("issuer.issuer_url", "is required")
	} else {
		v.url("issuer.issuer_url", is.IssuerURL, true)
	}
	v.positive("issuer.token_ttl", is.TokenTTL)

	if len(is.SigningKeys) == 0 {
		v.add("issuer.signing_keys", "at least one signing key is required")
	}
	kids := map[string]string{}
	for i, k := range is.SigningKeys {
		path := indexPath("issuer.signing_keys", i)
		switch {
		case k.Kid == "":
			v.add(path+".kid", "is required")
		case len(k.Kid) > maxKidLen || !printableASCII(k.Kid):
			v.add(path+".kid", "must be at most %d printable ASCII characters", maxKidLen)
		case kids[k.Kid] != "":
			v.add(path+".kid", "duplicate kid (also %s)", kids[k.Kid])
		default:
			kids[k.Kid] = path
		}
		switch {
		case k.Alg == "":
			v.add(path+".alg", "is required (one of %s)", jose.SigningAlgorithmList())
		case !jose.IsSigningAlgorithm(k.Alg):
			v.add(path+".alg", "unsupported algorithm %s (use one of %s)", quote(k.Alg), jose.SigningAlgorithmList())
		}
		if (k.File == "") == !k.Generate {
			v.add(path, "exactly one of file, generate")
		}
	}

	ids := map[string]string{}
	for i := range is.Clients {
		c := &is.Clients[i]
		path := indexPath("issuer.clients", i)
		switch {
		case c.ClientID == "":
			v.add(path+".client_id", "is required")
		case hasControl(c.ClientID):
			v.add(path+".client_id", "must not contain control characters")
		case ids[c.ClientID] != "":
			v.add(path+".client_id", "duplicate client_id (also %s)", ids[c.ClientID])
		default:
			ids[c.ClientID] = path
		}
		v.scopes(path+".scopes", c.Scopes)
		v.scopes(path+".default_scopes", c.DefaultScopes)
		for j, s := range c.DefaultScopes {
			if validScope(s) && !slices.Contains(c.Scopes, s) {
				v.add(indexPath(path+".default_scopes", j), "%s is not in scopes", quote(s))
			}
		}
		if len(c.Audiences) == 0 {
			v.add(path+".audiences", "at least one audience is required (RFC 9068 section 2.2)")
		}
		v.nonEmpty(path+".audiences", c.Audiences)
		v.positive(path+".token_ttl", c.TokenTTL)
		if c.SigningKey != "" && kids[c.SigningKey] == "" {
			v.add(path+".signing_key", "unknown signing key %s", quote(c.SigningKey))
		}
		for _, name := range keys(v, path+".claims", c.Claims) {
			if jose.IsReservedClaim(name) {
				v.add(keyPath(path+".claims", name), "reserved claim, set by the issuer")
			} else if name == "" {
				v.add(keyPath(path+".claims", name), "claim name is required")
			}
		}
	}
}

func (v *validator) providers() {
	names := map[string]string{}
	for i := range v.cfg.Providers {
		pr := &v.cfg.Providers[i]
		path := indexPath("providers", i)
		v.name(path+".name", pr.Name, names, "provider")

		switch {
		case pr.Issuer == "":
			v.add(path+".issuer", "is required")
		case pr.IsSelf():
			if v.cfg.Issuer == nil {
				v.add(path+".issuer", "\"self\" requires the issuer section")
			}
			if pr.JWKSURI != "" {
				v.add(path+".jwks_uri", "not allowed with issuer: self")
			}
			if pr.Discovery {
				v.add(path+".discovery", "not allowed with issuer: self")
			}
		default:
			switch {
			case pr.JWKSURI != "" && pr.Discovery, pr.JWKSURI == "" && !pr.Discovery:
				v.add(path, "exactly one of jwks_uri, discovery: true")
			case pr.Discovery:
				// The discovery document is read from the issuer URL, so it must be one
				// (OpenID Connect Discovery 1.0 section 4).
				v.url(path+".issuer", pr.Issuer, true)
			default:
				v.url(path+".jwks_uri", pr.JWKSURI, false)
			}
			if len(pr.Audiences) == 0 {
				v.add(path+".audiences", "at least one audience is required for an external provider")
			}
		}
		v.nonEmpty(path+".audiences", pr.Audiences)

		if len(pr.Algorithms) == 0 {
			v.add(path+".algorithms", "at least one algorithm is required")
		}
		seen := map[string]bool{}
		for j, a := range pr.Algorithms {
			ap := indexPath(path+".algorithms", j)
			switch {
			case strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS"):
				v.add(ap, "algorithm %s is never allowed (none and symmetric algorithms are refused)", quote(a))
			case !jose.IsVerificationAlgorithm(a):
				v.add(ap, "unsupported algorithm %s", quote(a))
			case seen[a]:
				v.add(ap, "duplicate algorithm %s", quote(a))
			}
			seen[a] = true
		}
		if pr.ClockSkew.Std() > maxClockSkew {
			v.add(path+".clock_skew", "must be at most %s", maxClockSkew)
		}
		if pr.RefreshInterval.Std() < minRefreshInterval {
			v.add(path+".refresh_interval", "must be at least %s", minRefreshInterval)
		}
		v.positive(path+".max_token_lifetime", pr.MaxTokenLifetime)
		if pr.RequireTyp != "" && !validToken(pr.RequireTyp, true) {
			v.add(path+".require_typ", "must be a media type such as at+jwt")
		}
	}
}

func (v *validator) routes() {
	if len(v.cfg.Routes) == 0 && v.cfg.Issuer == nil {
		v.add("routes", "at least one route (or the issuer section) is required")
	}
	names := map[string]string{}
	for i := range v.cfg.Routes {
		rt := &v.cfg.Routes[i]
		path := indexPath("routes", i)
		v.name(path+".name", rt.Name, names, "route")
		v.match(path+".match", &rt.Match)
		v.authenticate(path+".authenticate", &rt.Authenticate)
		v.upstream(path+".upstream", &rt.Upstream, &rt.Authenticate)
		rt.ForwardClaims = v.forwardClaims(path+".forward_claims", rt.ForwardClaims)
		for j := range i {
			if covers(&v.cfg.Routes[j].Match, &rt.Match) {
				v.p.warn(path+".match", "never chosen by match: %s (%s) comes first and covers it; only a gateway that names the route reaches it",
					indexPath("routes", j), quote(v.cfg.Routes[j].Name))
				break
			}
		}
	}
}

// covers reports whether every request that fits b also fits a (SPEC section 4), so that a
// route with match b after a route with match a is never chosen by matching.
func covers(a, b *Match) bool {
	switch {
	case a.Authority == "" || a.Authority == b.Authority:
	case strings.HasPrefix(a.Authority, "*.") && b.Authority != "" &&
		strings.HasSuffix(strings.TrimPrefix(b.Authority, "*"), a.Authority[1:]):
	default:
		return false
	}
	if a.PathPrefix != "" {
		switch {
		case b.IgnoreCase && !a.IgnoreCase:
			return false // b also fits letter cases a does not
		case a.IgnoreCase && !strings.HasPrefix(strings.ToLower(b.PathPrefix), strings.ToLower(a.PathPrefix)):
			return false
		case !a.IgnoreCase && !strings.HasPrefix(b.PathPrefix, a.PathPrefix):
			return false
		}
	}
	if len(a.Methods) == 0 {
		return true
	}
	if len(b.Methods) == 0 {
		return false
	}
	for _, m := range b.Methods {
		if !slices.Contains(a.Methods, m) {
			return false
		}
	}
	return true
}

// name checks a route or provider name: required, unique, [A-Za-z0-9._-], since it is a
// metrics label and Envoy's context_extensions value.
func (v *validator) name(path, name string, seen map[string]string, what string) {
	switch {
	case name == "":
		v.add(path, "is required")
	case len(name) > maxNameLen || !nameRE.MatchString(name):
		v.add(path, "must be 1 to %d characters among A-Z a-z 0-9 . _ -", maxNameLen)
	case seen[name] != "":
		v.add(path, "duplicate %s name (also %s)", what, seen[name])
	default:
		seen[name] = path
	}
}

func (v *validator) match(path string, m *Match) {
	if m.Authority != "" {
		m.Authority = strings.ToLower(m.Authority)
		if msg := checkAuthority(m.Authority); msg != "" {
			v.add(path+".authority", "%s", msg)
		}
	}
	if m.PathPrefix != "" {
		switch {
		case !strings.HasPrefix(m.PathPrefix, "/"):
			v.add(path+".path_prefix", "must start with /")
		case strings.ContainsAny(m.PathPrefix, "?#") || hasSpaceOrControl(m.PathPrefix):
			v.add(path+".path_prefix", "must not contain ?, #, spaces or control characters")
		}
	}
	seen := map[string]bool{}
	for j, meth := range m.Methods {
		mp := indexPath(path+".methods", j)
		up := strings.ToUpper(meth)
		switch {
		case !validToken(up, false):
			v.add(mp, "not a valid HTTP method")
		case seen[up]:
			v.add(mp, "duplicate method %s", quote(up))
		}
		seen[up] = true
		m.Methods[j] = up
	}
}

// checkAuthority returns what is wrong with a lower-cased authority pattern, or "".
func checkAuthority(a string) string {
	const msg = "must be a host name without port, or *.domain"
	host, wildcard := strings.CutPrefix(a, "*.")
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		if ip := net.ParseIP(host[1 : len(host)-1]); ip == nil || ip.To4() != nil || wildcard {
			return msg
		}
		return ""
	}
	if strings.Contains(host, ":") {
		if net.ParseIP(host) != nil {
			return "IPv6 addresses are written in brackets, e.g. [::1]"
		}
		return "must not include a port (the port is ignored when matching)"
	}
	if !validHostname(host) {
		return msg
	}
	return ""
}

// validHostname accepts DNS names (labels of letters, digits, '-' and '_', not starting or
// ending with '-') and IPv4 literals.
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func (v *validator) authenticate(path string, a *Authenticate) {
	n := 0
	for _, set := range []bool{a.JWT != nil, a.ClientCredentials != nil, a.None != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		v.add(path, "exactly one of jwt, client_credentials, none")
	}
	if j := a.JWT; j != nil {
		jp := path + ".jwt"
		if len(j.Providers) == 0 {
			v.add(jp+".providers", "at least one provider is required")
		}
		byIssuer := map[string]string{}
		seen := map[string]bool{}
		for k, name := range j.Providers {
			pp := indexPath(jp+".providers", k)
			pr := v.cfg.Provider(name)
			switch {
			case pr == nil:
				v.add(pp, "unknown provider %s", quote(name))
			case seen[name]:
				v.add(pp, "duplicate provider %s", quote(name))
			case byIssuer[pr.Issuer] != "":
				// The token's iss selects the provider; two with one issuer would be ambiguous.
				v.add(pp, "provider %s has the same issuer as provider %s", quote(name), quote(byIssuer[pr.Issuer]))
			default:
				byIssuer[pr.Issuer] = name
			}
			seen[name] = true
		}
		v.scopes(jp+".scopes", j.Scopes)
		if _, ok := j.Claims[""]; ok {
			v.add(keyPath(jp+".claims", ""), "claim name is required")
		}
	}
	if cc := a.ClientCredentials; cc != nil {
		// The caller's secret is always verified (SPEC section 3): at an IdP, or against the
		// issuer's clients; a route that took any secret would hand out upstream credentials
		// for any client id.
		cp := path + ".client_credentials"
		switch {
		case (cc.TokenURL == "") == (cc.Clients == ""):
			v.add(cp, "exactly one of token_url, clients: self (the caller's secret must be verified)")
		case cc.Clients != "":
			if cc.Clients != ClientsSelf {
				v.add(cp+".clients", "must be self")
			} else if v.cfg.Issuer == nil {
				v.add(cp+".clients", "self requires the issuer section")
			}
			if len(cc.Scopes) > 0 || cc.Audience != "" || len(cc.EndpointParams) > 0 {
				v.add(cp, "scopes, audience and endpoint_params only go with token_url")
			}
		default:
			v.tokenURL(cp+".token_url", cc.TokenURL)
			v.exchange(cp, &cc.Exchange)
		}
	}
}

func (v *validator) upstream(path string, u *Upstream, a *Authenticate) {
	auth := a.Mode()
	n := 0
	for _, set := range []bool{u.Mint != nil, u.Fetch != nil, u.Exchanged != nil, u.Passthrough != nil, u.Remove != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		v.add(path, "exactly one of mint, fetch, exchanged, passthrough, remove")
	}
	if m := u.Mint; m != nil {
		mp := path + ".mint"
		if v.cfg.Issuer == nil {
			v.add(mp, "requires the issuer section")
		}
		if auth == AuthNone {
			// A token signed for anyone who asks would turn the gateway into a token vending
			// machine.
			v.add(mp, "requires an authenticated caller (authenticate.jwt or client_credentials)")
		}
		if m.Audience == "" {
			v.add(mp+".audience", "is required")
		} else if c := v.clientWithAudience(m.Audience); c != "" {
			// A minted token is a credential for its upstream only (RFC 8725 section 3.9): if a
			// client could ask for this audience, the `self` provider would accept tokens minted
			// for the upstream, with the mint route's scopes, on tokengate's own routes.
			v.add(mp+".audience", "%s may also be asked for by %s; a minted token's audience must be one no issuer client may ask for", quote(m.Audience), c)
		}
		v.scopes(mp+".scopes", m.Scopes)
		v.positive(mp+".ttl", m.TTL)
	}
	if f := u.Fetch; f != nil {
		fp := path + ".fetch"
		v.tokenURL(fp+".token_url", f.TokenURL)
		if f.ClientID == "" {
			v.add(fp+".client_id", "is required")
		}
		v.exchange(fp, &f.Exchange)
	}
	switch {
	case u.Exchanged == nil:
	case auth != AuthClientCredentials:
		v.add(path+".exchanged", "only allowed with authenticate.client_credentials")
	case a.ClientCredentials.TokenURL == "":
		v.add(path+".exchanged", "needs client_credentials.token_url (the token obtained there goes upstream)")
	}
	if u.Passthrough != nil && auth == AuthClientCredentials {
		v.add(path+".passthrough", "would send the caller's client secret upstream; use exchanged")
	}
}

// clientWithAudience returns the path of an issuer client that may ask for aud, or "".
func (v *validator) clientWithAudience(aud string) string {
	if v.cfg.Issuer == nil {
		return ""
	}
	for i, c := range v.cfg.Issuer.Clients {
		if slices.Contains(c.Audiences, aud) {
			return indexPath("issuer.clients", i)
		}
	}
	return ""
}

// exchange checks the settings shared by fetch and client_credentials.
func (v *validator) exchange(path string, e *Exchange) {
	v.scopes(path+".scopes", e.Scopes)
	for _, k := range keys(v, path+".endpoint_params", e.EndpointParams) {
		switch {
		case k == "":
			v.add(keyPath(path+".endpoint_params", k), "parameter name is required")
		case reservedParams[k]:
			v.add(keyPath(path+".endpoint_params", k), "reserved parameter, set by tokengate from its own settings")
		}
	}
	if e.AuthStyle != "basic" && e.AuthStyle != "body" {
		v.add(path+".auth_style", "must be basic or body")
	}
	if v.positive(path+".timeout", e.Timeout) && e.Timeout.Std() > maxTimeout {
		v.add(path+".timeout", "must be at most %s", maxTimeout)
	}
	v.positive(path+".default_ttl", e.DefaultTTL)
}

// forwardClaims checks the header names and returns the map with lower-cased names.
func (v *validator) forwardClaims(path string, fc map[string]string) map[string]string {
	if fc == nil {
		return nil
	}
	out := make(map[string]string, len(fc))
	first := map[string]string{}
	for _, h := range keys(v, path, fc) {
		hp := keyPath(path, h)
		lower := strings.ToLower(h)
		switch {
		case strings.HasPrefix(h, ":"):
			v.add(hp, "pseudo-headers cannot be set")
		case !validToken(lower, false):
			v.add(hp, "not a valid header name")
		case forbiddenHeaders[lower]:
			v.add(hp, "this header cannot be set from a claim")
		case first[lower] != "":
			v.add(hp, "duplicate header (names are case-insensitive; also %s)", quote(first[lower]))
		}
		if fc[h] == "" {
			v.add(hp, "claim name is required")
		}
		if first[lower] == "" {
			first[lower] = h
		}
		out[lower] = fc[h]
	}
	return out
}

func (v *validator) cache() {
	c := &v.cfg.Cache
	if c.VerifiedTokens < 1 || c.VerifiedTokens > maxCacheEntries {
		v.add("cache.verified_tokens", "must be between 1 and %d", maxCacheEntries)
	}
	if c.UpstreamTokens < 1 || c.UpstreamTokens > maxCacheEntries {
		v.add("cache.upstream_tokens", "must be between 1 and %d", maxCacheEntries)
	}
	r := c.Redis
	if r == nil {
		return
	}
	n := 0
	for _, set := range []bool{r.Addr != "", r.SentinelAddrs != nil, r.ClusterAddrs != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		v.add("cache.redis", "exactly one of addr, sentinel_addrs, cluster_addrs")
	}
	if r.Addr != "" {
		v.redisAddr("cache.redis.addr", r.Addr)
	}
	v.redisAddrs("cache.redis.sentinel_addrs", r.SentinelAddrs)
	v.redisAddrs("cache.redis.cluster_addrs", r.ClusterAddrs)
	switch {
	case r.SentinelAddrs != nil && r.MasterName == "":
		v.add("cache.redis.master_name", "is required with sentinel_addrs")
	case r.SentinelAddrs == nil && r.MasterName != "":
		v.add("cache.redis.master_name", "only allowed with sentinel_addrs")
	}
	switch {
	case r.DB < 0:
		v.add("cache.redis.db", "must not be negative")
	case r.DB != 0 && r.ClusterAddrs != nil:
		v.add("cache.redis.db", "must be 0 with cluster_addrs")
	}
	if !r.TLS.Enabled && (r.TLS.CAFile != "" || r.TLS.ServerName != "") {
		v.add("cache.redis.tls", "ca_file and server_name require enabled: true")
	}
}

func (v *validator) redisAddrs(path string, addrs []string) {
	if addrs != nil && len(addrs) == 0 {
		v.add(path, "must not be empty")
	}
	for i, a := range addrs {
		v.redisAddr(indexPath(path, i), a)
	}
}

func (v *validator) redisAddr(path, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || !validPort(port) || port == "0" {
		v.add(path, "must be host:port")
	}
}

// url checks a URL tokengate fetches or publishes with httpx.CheckURL; issuer also refuses a
// query (RFC 8414 §2). The URL itself is never quoted: it could carry a secret in its user-info
// or query.
func (v *validator) url(path, raw string, issuer bool) {
	_, err := httpx.CheckURL(raw, v.cfg.Server.AllowHTTPURLs)
	u, perr := url.Parse(raw)
	if errors.Is(err, httpx.ErrInvalidURL) || perr != nil || u.Scheme != "https" && u.Scheme != "http" {
		v.add(path, "must be an absolute http(s) URL")
		return
	}
	if errors.Is(err, httpx.ErrUserinfo) {
		v.add(path, "must not contain credentials")
	}
	if errors.Is(err, httpx.ErrFragment) {
		v.add(path, "must not have a fragment")
	}
	if issuer && (u.RawQuery != "" || u.ForceQuery) {
		v.add(path, "must not have a query (RFC 8414 section 2)")
	}
	if errors.Is(err, httpx.ErrInsecureURL) {
		v.add(path, "http:// is only allowed for loopback hosts (127.0.0.0/8, ::1, localhost) unless server.allow_http_urls is true")
	}
}

func (v *validator) tokenURL(path, raw string) {
	if raw == "" {
		v.add(path, "is required")
		return
	}
	v.url(path, raw, false)
}

// positive reports a duration that must be positive; it returns whether d is.
func (v *validator) positive(path string, d Duration) bool {
	if d <= 0 {
		v.add(path, "must be positive")
		return false
	}
	return true
}

// scopes checks scope tokens (RFC 6749 section 3.3).
func (v *validator) scopes(path string, scopes []string) {
	for i, s := range scopes {
		if !validScope(s) {
			v.add(indexPath(path, i), "invalid scope (RFC 6749 section 3.3: no spaces, quotes or backslashes)")
		}
	}
}

func validScope(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == '"' || c == '\\' || c > 0x7e {
			return false
		}
	}
	return true
}

func (v *validator) nonEmpty(path string, list []string) {
	for i, s := range list {
		if s == "" {
			v.add(indexPath(path, i), "must not be empty")
		}
	}
}

// validToken reports whether s is an HTTP token (RFC 9110 section 5.6.2); slash additionally
// allows one "/" as in a media type.
func validToken(s string, slash bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		case c == '/' && slash:
		default:
			return false
		}
	}
	return true
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return true
		}
	}
	return false
}

func hasSpaceOrControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// keys returns the keys of the map at path in document order (sorted by name where the file
// does not tell), so that for example the second of two duplicate headers is the one reported.
func keys[V any](v *validator, path string, m map[string]V) []string {
	keys := slices.Sorted(maps.Keys(m))
	slices.SortStableFunc(keys, func(a, b string) int {
		return v.p.spans[keyPath(path, a)].start.cmp(v.p.spans[keyPath(path, b)].start)
	})
	return keys
}
