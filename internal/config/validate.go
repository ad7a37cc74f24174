package config

import (
	"cmp"
	"encoding/json"
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
// (RFC 6749 §4.4.2); endpoint_params may not replace them.
var reservedParams = []string{"grant_type", "client_id", "client_secret", "client_assertion", "client_assertion_type", "scope", "audience"}

// forbiddenHeaders may not be set from a claim: they carry credentials, select the virtual host,
// frame the message (a claim in content-length would be request smuggling) or are hop-by-hop
// (RFC 9110 §7.6.1).
var forbiddenHeaders = []string{"authorization", "proxy-authorization", "host", "content-length",
	"content-type", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade",
	"expect", "proxy-connection"}

// Character classes: names (metrics labels and the gateway's route names), HTTP tokens
// (RFC 9110 §5.6.2), media types, scope tokens (RFC 6749 §3.3), printable ASCII, and text with
// a space or control character.
var (
	nameRE      = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	tokenRE     = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
	mediaTypeRE = regexp.MustCompile("^[!#$%&'*+./^_`|~0-9A-Za-z-]+$")
	scopeRE     = regexp.MustCompile(`^[\x21\x23-\x5b\x5d-\x7e]+$`)
	printableRE = regexp.MustCompile(`^[\x20-\x7e]*$`)
	spaceCtlRE  = regexp.MustCompile(`[\x00-\x20\x7f]`)
	controlRE   = regexp.MustCompile(`[\x00-\x1f\x7f\x{80}-\x{9f}]`)
)

// validator checks a decoded, defaulted configuration.
type validator struct {
	cfg *Config
	*problems
}

func validate(cfg *Config, p *problems) {
	v := &validator{cfg, p}
	v.server()
	if cfg.Issuer != nil {
		v.issuer(cfg.Issuer)
	}
	v.providers()
	v.routes()
	v.cache()
}

// check reports the problem when bad; it returns !bad.
func (v *validator) check(bad bool, path, format string, args ...any) bool {
	if bad {
		v.add(path, format, args...)
	}
	return !bad
}

func (v *validator) required(path, s string) bool { return v.check(s == "", path, "is required") }

// positive reports a duration that must be positive; it returns whether d is.
func (v *validator) positive(path string, d Duration) bool {
	return v.check(d <= 0, path, "must be positive")
}

// timeout checks a request timeout: positive and at most maxTimeout.
func (v *validator) timeout(path string, d Duration) {
	if v.positive(path, d) {
		v.check(d.Std() > maxTimeout, path, "must be at most %s", maxTimeout)
	}
}

// each checks every element of list, reporting msg at those bad reports.
func (v *validator) each(path string, list []string, bad func(string) bool, msg string) {
	for i, s := range list {
		v.check(bad(s), indexPath(path, i), "%s", msg)
	}
}

// scopes checks scope tokens (RFC 6749 §3.3: no spaces, quotes or backslashes).
func (v *validator) scopes(path string, scopes []string) {
	v.each(path, scopes, func(s string) bool { return !scopeRE.MatchString(s) },
		"invalid scope (RFC 6749 section 3.3: no spaces, quotes or backslashes)")
}

// unique reports s at path when seen holds it (format names where with seen[s]); otherwise it
// records s at where.
func (v *validator) unique(path, s, where string, seen map[string]string, format string) {
	if v.check(seen[s] != "", path, format, seen[s]) {
		seen[s] = where
	}
}

// oneOf checks that exactly one option of *opts (an Authenticate or Upstream) is set.
func (v *validator) oneOf(path string, opts any) {
	all, set := options(opts)
	v.check(len(set) != 1, path, "exactly one of %s", strings.Join(all, ", "))
}

// count returns how many of set are true, for the "exactly one of" rules.
func count(set ...bool) (n int) {
	for _, s := range set {
		if s {
			n++
		}
	}
	return n
}

func (v *validator) server() {
	s := &v.cfg.Server
	seen := map[string]string{}
	for i, a := range [][2]string{{"server.grpc_addr", s.GRPCAddr}, {"server.http_addr", s.HTTPAddr},
		{"server.authz_addr", s.AuthzAddr}, {"server.metrics_addr", s.MetricsAddr}} {
		if i >= 2 && a[1] == "" {
			continue // authz_addr and metrics_addr are optional
		}
		_, port, err := net.SplitHostPort(a[1])
		const msg = `must be host:port, e.g. ":9001" or "127.0.0.1:9001"`
		if v.check(err != nil || !validPort(port), a[0], msg) && !strings.HasSuffix(a[1], ":0") {
			v.unique(a[0], a[1], a[0], seen, "must differ from %s")
		}
	}
	v.check(s.MaxTokenBytes < minMaxTokenBytes || s.MaxTokenBytes > maxMaxTokenBytes, "server.max_token_bytes",
		"must be between %d and %d", minMaxTokenBytes, maxMaxTokenBytes)
	families := []string{ForwardAuthAuto, ForwardAuthXForwarded, ForwardAuthXOriginal, ForwardAuthRequest}
	v.check(!slices.Contains(families, s.ForwardAuthHeaders), "server.forward_auth_headers",
		"must be one of %s", strings.Join(families, ", "))
	if s.ClientCertHeader != "" {
		s.ClientCertHeader = strings.ToLower(s.ClientCertHeader)
		h := s.ClientCertHeader
		v.check(!tokenRE.MatchString(h) || slices.Contains(forbiddenHeaders, h), "server.client_cert_header",
			"must be a header name other than Authorization, Host and framing headers")
	}
	s.TrustedProxyPrefixes = nil
	for i, t := range s.TrustedProxies {
		// A CIDR, or a single address as its /32 or /128.
		pfx, err := netip.ParsePrefix(t)
		pfx = pfx.Masked()
		if a, aerr := netip.ParseAddr(t); aerr == nil {
			pfx, err = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
		}
		if v.check(err != nil, indexPath("server.trusted_proxies", i),
			"must be an IP address or a CIDR such as 10.0.0.0/8") {
			s.TrustedProxyPrefixes = append(s.TrustedProxyPrefixes, pfx)
		}
	}
	if g := s.GatewayTLS; g != nil {
		const path = "server.gateway_tls"
		v.required(path+".cert_file", g.CertFile)
		v.required(path+".key_file", g.KeyFile)
		v.check(len(g.ClientSANs) > 0 && g.ClientCAFile == "", path+".client_sans", "requires client_ca_file")
		for i, san := range g.ClientSANs {
			// The gateway's certificate is matched by its DNS name and URI SANs only
			// (docs/deployment.md#deployment-security), so an IP literal, which a DNS name or an
			// opaque URI would otherwise take it for ("10.0.0.7", "fd00::7"), could never match.
			if _, err := netip.ParseAddr(strings.Trim(san, "[]")); err == nil {
				v.add(indexPath(path+".client_sans", i), "an IP address never matches: gateway certificates are matched by their DNS name and URI SANs only")
				continue
			}
			// A DNS name, or an absolute URI (SPIFFE IDs are URI SANs).
			bad := !validHostname(strings.ToLower(strings.TrimPrefix(san, "*.")))
			if u, err := url.Parse(san); strings.Contains(san, ":") {
				bad = err != nil || u.Scheme == "" || u.Host == "" && u.Opaque == "" || spaceCtlRE.MatchString(san)
			}
			v.check(bad, indexPath(path+".client_sans", i), "must be a DNS name or a URI such as spiffe://cluster.local/ns/NS/sa/SA")
		}
	}
}

func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535 && decimal.MatchString(port)
}

func (v *validator) issuer(is *Issuer) {
	v.url("issuer.issuer_url", is.IssuerURL, true)
	v.positive("issuer.token_ttl", is.TokenTTL)
	v.check(len(is.SigningKeys) == 0, "issuer.signing_keys", "at least one signing key is required")
	kids, algs := map[string]string{}, jose.SigningAlgorithmList()
	for i, k := range is.SigningKeys {
		path := indexPath("issuer.signing_keys", i)
		if v.required(path+".kid", k.Kid) && v.check(len(k.Kid) > maxKidLen || !printableRE.MatchString(k.Kid),
			path+".kid", "must be at most %d printable ASCII characters", maxKidLen) {
			v.unique(path+".kid", k.Kid, path, kids, "duplicate kid (also %s)")
		}
		if v.check(k.Alg == "", path+".alg", "is required (one of %s)", algs) {
			v.check(!jose.IsSigningAlgorithm(k.Alg), path+".alg", "unsupported algorithm %s (use one of %s)",
				quote(k.Alg), algs)
		}
		v.check((k.File == "") == !k.Generate, path, "exactly one of file, generate")
	}
	ids := map[string]string{}
	for i, c := range is.Clients {
		path := indexPath("issuer.clients", i)
		if v.required(path+".client_id", c.ClientID) &&
			v.check(controlRE.MatchString(c.ClientID), path+".client_id",
				"must not contain control characters") {
			v.unique(path+".client_id", c.ClientID, path, ids, "duplicate client_id (also %s)")
		}
		v.scopes(path+".scopes", c.Scopes)
		v.scopes(path+".default_scopes", c.DefaultScopes)
		for j, s := range c.DefaultScopes {
			v.check(scopeRE.MatchString(s) && !slices.Contains(c.Scopes, s),
				indexPath(path+".default_scopes", j), "%s is not in scopes", quote(s))
		}
		v.check(len(c.Audiences) == 0, path+".audiences",
			"at least one audience is required (RFC 9068 section 2.2)")
		v.each(path+".audiences", c.Audiences, isEmpty, "must not be empty")
		v.positive(path+".token_ttl", c.TokenTTL)
		v.check(c.SigningKey != "" && kids[c.SigningKey] == "", path+".signing_key", "unknown signing key %s",
			quote(c.SigningKey))
		for _, name := range keys(v, path+".claims", c.Claims) {
			cp := keyPath(path+".claims", name)
			if v.check(jose.IsReservedClaim(name) || name == "act" || name == "may_act", cp,
				"reserved claim, set by the issuer") {
				v.check(name == "", cp, "claim name is required")
			}
		}
		for j, g := range c.GrantTypes {
			gp := indexPath(path+".grant_types", j)
			switch {
			case g != GrantClientCredentials && g != GrantTokenExchange:
				v.add(gp, "must be client_credentials or token_exchange")
			case g == GrantTokenExchange && is.TokenExchange == nil:
				v.add(gp, "token_exchange needs issuer.token_exchange.subject_providers")
			}
		}
		if c.JWKSURI != "" {
			v.url(path+".jwks_uri", c.JWKSURI, false)
		}
		if c.JWKS != nil {
			if b, err := json.Marshal(map[string]any(c.JWKS)); err != nil {
				v.add(path+".jwks", "must be a JWK set {keys: [...]}")
			} else if _, _, err := jose.ParseKeySet(b); err != nil {
				// The parser's text names no key material.
				v.add(path+".jwks", "must be a JWK set with at least one usable public signing key")
			}
		}
	}
	if te := is.TokenExchange; te != nil {
		v.check(len(te.SubjectProviders) == 0, "issuer.token_exchange.subject_providers",
			"at least one provider is required")
		for j, name := range te.SubjectProviders {
			p := v.cfg.Provider(name)
			path := indexPath("issuer.token_exchange.subject_providers", j)
			if !v.check(p == nil, path, "unknown provider %s", quote(name)) {
				continue
			}
			// A subject token comes in the request body (RFC 8693 §2.1) with no DPoP proof or
			// client certificate of its own holder, so the token endpoint cannot check a
			// binding: a provider that demands one must not be a source of subjects
			// (docs/issuer.md#token-exchange-rfc-8693).
			v.check(p.RequireBinding != "" && p.RequireBinding != BindingNone, path,
				"provider %s has require_binding %s: the token endpoint sees no proof of possession for a subject token, so it would accept that provider's tokens unbound",
				quote(name), p.RequireBinding)
		}
	}
}

func isEmpty(s string) bool { return s == "" }

func (v *validator) providers() {
	names := map[string]string{}
	for i, pr := range v.cfg.Providers {
		path := indexPath("providers", i)
		v.name(path+".name", pr.Name, names, "provider")
		switch {
		case pr.Introspection != nil:
			v.introspection(path, &pr)
		case !v.required(path+".issuer", pr.Issuer):
		case pr.IsSelf():
			v.check(v.cfg.Issuer == nil, path+".issuer", `"self" requires the issuer section`)
			v.check(pr.JWKSURI != "", path+".jwks_uri", "not allowed with issuer: self")
			v.check(pr.Discovery, path+".discovery", "not allowed with issuer: self")
		default:
			switch {
			case (pr.JWKSURI != "") == pr.Discovery:
				v.add(path, "exactly one of jwks_uri, discovery: true")
			case pr.Discovery:
				// The discovery document is read from the issuer URL, so it must be one
				// (OpenID Connect Discovery 1.0 §4).
				v.url(path+".issuer", pr.Issuer, true)
			default:
				v.url(path+".jwks_uri", pr.JWKSURI, false)
			}
			v.check(len(pr.Audiences) == 0, path+".audiences",
				"at least one audience is required for an external provider")
		}
		v.each(path+".audiences", pr.Audiences, isEmpty, "must not be empty")
		v.check(len(pr.Algorithms) == 0, path+".algorithms", "at least one algorithm is required")
		for j, a := range pr.Algorithms {
			ap := indexPath(path+".algorithms", j)
			_ = v.check(strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS"), ap,
				"algorithm %s is never allowed (none and symmetric algorithms are refused)", quote(a)) &&
				v.check(!jose.IsVerificationAlgorithm(a), ap, "unsupported algorithm %s", quote(a)) &&
				v.check(slices.Contains(pr.Algorithms[:j], a), ap, "duplicate algorithm %s", quote(a))
		}
		v.check(pr.ClockSkew.Std() > maxClockSkew, path+".clock_skew", "must be at most %s", maxClockSkew)
		v.check(pr.RefreshInterval.Std() < minRefreshInterval, path+".refresh_interval",
			"must be at least %s", minRefreshInterval)
		v.positive(path+".max_token_lifetime", pr.MaxTokenLifetime)
		v.check(pr.RequireTyp != "" && !mediaTypeRE.MatchString(pr.RequireTyp), path+".require_typ",
			"must be a media type such as at+jwt")
		v.binding(path+".require_binding", pr.RequireBinding)
	}
}

// binding checks a require_binding value.
func (v *validator) binding(path, b string) {
	switch b {
	case "", BindingNone, BindingDPoP, BindingMTLS, BindingAny:
	default:
		v.add(path, "must be none, dpop, mtls or any, not %s", quote(b))
	}
}

// introspection checks an opaque-token provider (RFC 7662). Its issuer is optional (compared
// with an answer's iss when both are present) and so are its audiences: the answer is
// authoritative (RFC 7662 §2.2), but an aud it carries must match one listed.
func (v *validator) introspection(path string, pr *Provider) {
	in := pr.Introspection
	v.check(pr.JWKSURI != "", path+".jwks_uri", "not allowed with introspection")
	v.check(pr.Discovery, path+".discovery", "not allowed with introspection")
	v.check(pr.IsSelf(), path+".issuer", "issuer: self is not allowed with introspection")
	ip := path + ".introspection"
	v.url(ip+".url", in.URL, false)
	v.required(ip+".client_id", in.ClientID)
	v.positive(ip+".cache_ttl", in.CacheTTL)
	v.positive(ip+".negative_ttl", in.NegativeTTL)
}

// name checks a route or provider name: required, unique, [A-Za-z0-9._-], since it is a
// metrics label and the gateway's route name.
func (v *validator) name(path, name string, seen map[string]string, what string) {
	if v.required(path, name) && v.check(len(name) > maxNameLen || !nameRE.MatchString(name), path,
		"must be 1 to %d characters among A-Z a-z 0-9 . _ -", maxNameLen) {
		v.unique(path, name, path, seen, "duplicate "+what+" name (also %s)")
	}
}

func (v *validator) routes() {
	v.check(len(v.cfg.Routes) == 0 && v.cfg.Issuer == nil, "routes",
		"at least one route (or the issuer section) is required")
	names := map[string]string{}
	for i := range v.cfg.Routes {
		rt := &v.cfg.Routes[i]
		path := indexPath("routes", i)
		v.name(path+".name", rt.Name, names, "route")
		v.match(path+".match", &rt.Match)
		v.authenticate(path+".authenticate", &rt.Authenticate)
		v.upstream(path+".upstream", &rt.Upstream, &rt.Authenticate)
		rt.ForwardClaims = v.forwardClaims(path+".forward_claims", rt.ForwardClaims)
		earlier := func(r Route) bool { return covers(&r.Match, &rt.Match) }
		if j := slices.IndexFunc(v.cfg.Routes[:i], earlier); j >= 0 {
			v.warn(path+".match", "never chosen by match: %s (%s) comes first and covers it; only a "+
				"gateway that names the route reaches it", indexPath("routes", j), quote(v.cfg.Routes[j].Name))
		}
	}
}

// covers reports whether every request that fits b also fits a, so that a route with match b
// after a route with match a is never chosen by matching.
func covers(a, b *Match) bool {
	switch {
	case a.Authority == "" || a.Authority == b.Authority:
	case strings.HasPrefix(a.Authority, "*.") && b.Authority != "" &&
		strings.HasSuffix(strings.TrimPrefix(b.Authority, "*"), a.Authority[1:]):
	default:
		return false
	}
	switch {
	case a.PathPrefix == "":
	case b.IgnoreCase && !a.IgnoreCase:
		return false // b also fits letter cases a does not
	case a.IgnoreCase && !strings.HasPrefix(strings.ToLower(b.PathPrefix), strings.ToLower(a.PathPrefix)):
		return false
	case !a.IgnoreCase && !strings.HasPrefix(b.PathPrefix, a.PathPrefix):
		return false
	}
	return len(a.Methods) == 0 || len(b.Methods) > 0 &&
		!slices.ContainsFunc(b.Methods, func(m string) bool { return !slices.Contains(a.Methods, m) })
}

func (v *validator) match(path string, m *Match) {
	if m.Authority != "" {
		m.Authority = strings.ToLower(m.Authority)
		msg := checkAuthority(m.Authority)
		v.check(msg != "", path+".authority", "%s", msg)
	}
	pp, ppath := m.PathPrefix, path+".path_prefix"
	if pp != "" && v.check(!strings.HasPrefix(pp, "/"), ppath, "must start with /") {
		v.check(strings.ContainsAny(pp, "?#") || spaceCtlRE.MatchString(pp), ppath,
			"must not contain ?, #, spaces or control characters")
	}
	for j, meth := range m.Methods {
		up := strings.ToUpper(meth)
		mp := indexPath(path+".methods", j)
		if v.check(!tokenRE.MatchString(up), mp, "not a valid HTTP method") {
			v.check(slices.Contains(m.Methods[:j], up), mp, "duplicate method %s", quote(up))
		}
		m.Methods[j] = up
	}
}

// checkAuthority returns what is wrong with a lower-cased authority pattern, or "".
func checkAuthority(a string) string {
	const msg = "must be a host name without port, or *.domain"
	host, wildcard := strings.CutPrefix(a, "*.")
	switch {
	case strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]"):
		if ip := net.ParseIP(host[1 : len(host)-1]); ip == nil || ip.To4() != nil || wildcard {
			return msg
		}
	case strings.Contains(host, ":") && net.ParseIP(host) != nil:
		return "IPv6 addresses are written in brackets, e.g. [::1]"
	case strings.Contains(host, ":"):
		return "must not include a port (the port is ignored when matching)"
	case !validHostname(host):
		return msg
	}
	return ""
}

// validHostname accepts DNS names (labels of letters, digits, '-' and '_', not starting or
// ending with '-') and IPv4 literals.
func validHostname(h string) bool {
	labels := strings.Split(strings.TrimSuffix(h, "."), ".")
	return h != "" && len(h) <= 253 && !slices.ContainsFunc(labels, func(l string) bool {
		return l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' ||
			strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789-_") != ""
	})
}

func (v *validator) authenticate(path string, a *Authenticate) {
	v.oneOf(path, a)
	if j := a.JWT; j != nil {
		jp := path + ".jwt"
		v.check(len(j.Providers) == 0, jp+".providers", "at least one provider is required")
		byIssuer := map[string]string{}
		for k, name := range j.Providers {
			pp := indexPath(jp+".providers", k)
			pr := v.cfg.Provider(name)
			// The token's iss selects the provider; two with one issuer would be ambiguous.
			// An introspection provider is not selected by iss (its tokens are opaque), so it
			// may share its issuer with a JWT provider of the same IdP.
			if v.check(pr == nil, pp, "unknown provider %s", quote(name)) &&
				v.check(slices.Contains(j.Providers[:k], name), pp, "duplicate provider %s", quote(name)) &&
				pr.Introspection == nil &&
				v.check(byIssuer[pr.Issuer] != "", pp, "provider %s has the same issuer as provider %s",
					quote(name), quote(byIssuer[pr.Issuer])) {
				byIssuer[pr.Issuer] = name
			}
		}
		v.scopes(jp+".scopes", j.Scopes)
		_, empty := j.Claims[""]
		v.check(empty, keyPath(jp+".claims", ""), "claim name is required")
		v.binding(jp+".require_binding", j.RequireBinding)
	}
	if cc := a.ClientCredentials; cc != nil {
		// The caller's secret is always verified, at an IdP or against the issuer's clients: a
		// route that took any secret would hand out upstream credentials for any client id.
		cp := path + ".client_credentials"
		switch {
		case (cc.TokenURL == "") == (cc.Clients == ""):
			v.add(cp, "exactly one of token_url, clients: self (the caller's secret must be verified)")
		case cc.Clients != "":
			if v.check(cc.Clients != ClientsSelf, cp+".clients", "must be self") {
				v.check(v.cfg.Issuer == nil, cp+".clients", "self requires the issuer section")
			}
			v.check(len(cc.Scopes) > 0 || cc.Audience != "" || len(cc.EndpointParams) > 0, cp,
				"scopes, audience and endpoint_params only go with token_url")
		default:
			v.exchange(cp, cc.TokenURL, nil, &cc.Exchange)
		}
	}
}

func (v *validator) upstream(path string, u *Upstream, a *Authenticate) {
	auth := a.Mode()
	v.oneOf(path, u)
	if m := u.Mint; m != nil {
		mp := path + ".mint"
		v.check(v.cfg.Issuer == nil, mp, "requires the issuer section")
		// A token signed for anyone who asks would make the gateway a token vending machine.
		v.check(auth == AuthNone, mp,
			"requires an authenticated caller (authenticate.jwt or client_credentials)")
		if v.required(mp+".audience", m.Audience) {
			// A minted token is a credential for its upstream only (RFC 8725 §3.9): if a client
			// could ask for this audience, the `self` provider would accept tokens minted for the
			// upstream, with the mint route's scopes, on tokengate's own routes.
			c := ""
			for i := 0; v.cfg.Issuer != nil && i < len(v.cfg.Issuer.Clients) && c == ""; i++ {
				if slices.Contains(v.cfg.Issuer.Clients[i].Audiences, m.Audience) {
					c = indexPath("issuer.clients", i)
				}
			}
			v.check(c != "", mp+".audience", "%s may also be asked for by %s; a minted token's audience "+
				"must be one no issuer client may ask for", quote(m.Audience), c)
		}
		v.scopes(mp+".scopes", m.Scopes)
		v.positive(mp+".ttl", m.TTL)
	}
	if f := u.Fetch; f != nil {
		v.exchange(path+".fetch", f.TokenURL, &f.ClientID, &f.Exchange)
	}
	if u.Exchanged != nil && v.check(auth != AuthClientCredentials, path+".exchanged",
		"only allowed with authenticate.client_credentials") {
		v.check(a.ClientCredentials.TokenURL == "", path+".exchanged",
			"needs client_credentials.token_url (the token obtained there goes upstream)")
	}
	if te := u.TokenExchange; te != nil {
		v.tokenExchange(path+".token_exchange", te, auth)
	}
	v.check(u.Passthrough != nil && auth == AuthClientCredentials, path+".passthrough",
		"would send the caller's client secret upstream; use exchanged")
}

// tokenExchange checks an RFC 8693 token-exchange upstream. It needs the caller's own token
// (authenticate.jwt): a client_credentials caller has only a secret, which is never sent on.
func (v *validator) tokenExchange(path string, te *TokenExchange, auth string) {
	v.check(auth != AuthJWT, path, "only allowed with authenticate.jwt (the caller's token is the subject_token)")
	v.url(path+".token_url", te.TokenURL, false)
	v.required(path+".client_id", te.ClientID)
	v.scopes(path+".scopes", te.Scopes)
	v.check(te.AuthStyle != "basic" && te.AuthStyle != "body", path+".auth_style", "must be basic or body")
	if te.Resource != "" {
		u, err := url.Parse(te.Resource)
		v.check(err != nil || !u.IsAbs() || u.Fragment != "", path+".resource",
			"must be an absolute URI without a fragment (RFC 8707 section 2)")
	}
	for _, f := range []struct{ name, value string }{
		{"subject_token_type", te.SubjectTokenType}, {"requested_token_type", te.RequestedTokenType},
	} {
		// RFC 8693 §3: token type identifiers are URIs (printable ASCII, no quote or backslash).
		v.check(!strings.Contains(f.value, ":") || !scopeRE.MatchString(f.value), path+"."+f.name,
			"must be a token type URI (RFC 8693 section 3)")
	}
	v.timeout(path+".timeout", te.Timeout)
}

// exchange checks a client-credentials request of fetch (with its client id) or
// client_credentials (without).
func (v *validator) exchange(path, tokenURL string, clientID *string, e *Exchange) {
	v.url(path+".token_url", tokenURL, false)
	if clientID != nil {
		v.required(path+".client_id", *clientID)
	}
	v.scopes(path+".scopes", e.Scopes)
	for _, k := range keys(v, path+".endpoint_params", e.EndpointParams) {
		if v.check(k == "", keyPath(path+".endpoint_params", k), "parameter name is required") {
			v.check(slices.Contains(reservedParams, k), keyPath(path+".endpoint_params", k),
				"reserved parameter, set by tokengate from its own settings")
		}
	}
	v.check(e.AuthStyle != "basic" && e.AuthStyle != "body", path+".auth_style", "must be basic or body")
	v.timeout(path+".timeout", e.Timeout)
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
		hp, lower := keyPath(path, h), strings.ToLower(h)
		_ = v.check(strings.HasPrefix(h, ":"), hp, "pseudo-headers cannot be set") &&
			v.check(!tokenRE.MatchString(lower), hp, "not a valid header name") &&
			v.check(slices.Contains(forbiddenHeaders, lower), hp, "this header cannot be set from a claim") &&
			v.check(first[lower] != "", hp, "duplicate header (names are case-insensitive; also %s)",
				quote(first[lower]))
		v.check(fc[h] == "", hp, "claim name is required")
		if first[lower] == "" {
			first[lower] = h
		}
		out[lower] = fc[h]
	}
	return out
}

func (v *validator) cache() {
	c := &v.cfg.Cache
	v.check(c.VerifiedTokens < 1 || c.VerifiedTokens > maxCacheEntries, "cache.verified_tokens",
		"must be between 1 and %d", maxCacheEntries)
	v.check(c.UpstreamTokens < 1 || c.UpstreamTokens > maxCacheEntries, "cache.upstream_tokens",
		"must be between 1 and %d", maxCacheEntries)
	r := c.Redis
	if r == nil {
		return
	}
	v.check(count(r.Addr != "", r.SentinelAddrs != nil, r.ClusterAddrs != nil) != 1, "cache.redis",
		"exactly one of addr, sentinel_addrs, cluster_addrs")
	badAddr := func(addr string) bool {
		host, port, err := net.SplitHostPort(addr)
		return err != nil || host == "" || !validPort(port) || port == "0"
	}
	v.check(r.Addr != "" && badAddr(r.Addr), "cache.redis.addr", "must be host:port")
	for i, addrs := range [][]string{r.SentinelAddrs, r.ClusterAddrs} {
		path := []string{"cache.redis.sentinel_addrs", "cache.redis.cluster_addrs"}[i]
		v.check(addrs != nil && len(addrs) == 0, path, "must not be empty")
		v.each(path, addrs, badAddr, "must be host:port")
	}
	const mn = "cache.redis.master_name"
	v.check(r.SentinelAddrs != nil && r.MasterName == "", mn, "is required with sentinel_addrs")
	v.check(r.SentinelAddrs == nil && r.MasterName != "", mn, "only allowed with sentinel_addrs")
	if v.check(r.DB < 0, "cache.redis.db", "must not be negative") {
		v.check(r.DB != 0 && r.ClusterAddrs != nil, "cache.redis.db", "must be 0 with cluster_addrs")
	}
	v.check(!r.TLS.Enabled && (r.TLS.CAFile != "" || r.TLS.ServerName != ""), "cache.redis.tls",
		"ca_file and server_name require enabled: true")
}

// url checks a required URL tokengate fetches or publishes with httpx.CheckURL; issuer also
// refuses a query (RFC 8414 §2). The URL is never quoted: its user-info or query could hold a secret.
func (v *validator) url(path, raw string, issuer bool) {
	if !v.required(path, raw) {
		return
	}
	_, err := httpx.CheckURL(raw, v.cfg.Server.AllowHTTPURLs)
	u, perr := url.Parse(raw)
	if !v.check(errors.Is(err, httpx.ErrInvalidURL) || perr != nil || u.Scheme != "https" && u.Scheme != "http",
		path, "must be an absolute http(s) URL") {
		return
	}
	v.check(errors.Is(err, httpx.ErrUserinfo), path, "must not contain credentials")
	v.check(errors.Is(err, httpx.ErrFragment), path, "must not have a fragment")
	v.check(issuer && (u.RawQuery != "" || u.ForceQuery), path, "must not have a query (RFC 8414 section 2)")
	v.check(errors.Is(err, httpx.ErrInsecureURL), path, "http:// is only allowed for loopback hosts "+
		"(127.0.0.0/8, ::1, localhost) unless server.allow_http_urls is true")
}

// keys returns the keys of the map at path in document order, so that for example the second
// of two duplicate headers is the one reported.
func keys[V any](v *validator, path string, m map[string]V) []string {
	keys := slices.Sorted(maps.Keys(m))
	slices.SortStableFunc(keys, func(a, b string) int {
		return cmp.Compare(v.spans[keyPath(path, a)].start, v.spans[keyPath(path, b)].start)
	})
	return keys
}
