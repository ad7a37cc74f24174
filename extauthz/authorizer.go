package extauthz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/tokengate/tokengate/internal/defaults"
	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/replay"
	"github.com/tokengate/tokengate/internal/upstream"
	"github.com/tokengate/tokengate/internal/verify"
)

// Verifier verifies a caller's Bearer JWT against the named providers.
// Implemented by *verify.Verifier; errors are *verify.Error.
type Verifier interface {
	Verify(ctx context.Context, token string, providers []string) (*verify.Principal, error)
}

// Request is one request to authorize, whatever the transport.
type Request struct {
	RouteName     string   // Envoy's context_extensions["route"], "" when absent
	Authority     string   // :authority / Host, with or without port
	Path          string   // :path, with query
	Method        string   // :method
	Authorization []string // every Authorization header value (Envoy joins repeats with commas)
	// ClientIP is the caller's address for the failure limiter (docs/issuer.md#failure-limiter):
	// gRPC attributes.source.address, or for forward-auth the peer / trusted X-Forwarded-For.
	ClientIP netip.Addr
	// Scheme is the request URL's scheme, for a DPoP proof's htu (RFC 9449 §4.3): gRPC
	// attributes.request.http.scheme, forward-auth X-Forwarded-Proto; "" is taken as https.
	Scheme string
	// DPoP is every DPoP header value (RFC 9449 §4.1).
	DPoP []string
	// ClientCert is the caller's TLS client certificate, URL-encoded PEM as Envoy
	// (attributes.source.certificate) and nginx ($ssl_client_escaped_cert) send it; "" for none.
	ClientCert string
}

// Limiter is the failure limiter of failed client authentications (RFC 6749 §2.3.1;
// docs/issuer.md#failure-limiter), shared with the token endpoint. Implemented by
// *authlimit.Limiter.
type Limiter interface {
	Allow(clientID string, ip netip.Addr) (retryAfter time.Duration, ok bool)
	Fail(clientID string, ip netip.Addr)
}

// ClientVerifier checks a client's secret against the built-in issuer's clients, in constant
// time, for `clients: self` routes. Implemented by *issuer.Issuer.
type ClientVerifier interface {
	VerifyClientSecret(clientID, secret string) bool
}

// Deps are the collaborators an Authorizer calls. The upstream tokens come from each route's
// own Source and Exchange.
type Deps struct {
	Verifier Verifier       // required when a route authenticates with jwt
	Clients  ClientVerifier // required for client_credentials routes with clients: self
	// Limiter limits failed client authentications on client_credentials routes; nil allows
	// every attempt (tests only: the app always passes the shared one).
	Limiter       Limiter
	MaxTokenBytes int // an Authorization credential above this is refused before parsing
	// DecisionTimeout bounds one decision when the caller set no earlier deadline (forward-auth
	// requests carry none; Envoy's gRPC Check carries its ext_authz timeout). Default 5 s.
	DecisionTimeout time.Duration
	Logger          *slog.Logger
	Metrics         *metrics.Metrics
	Now             func() time.Time
	// Bindings are the providers' settings for sender-constrained tokens (RFC 9449, RFC 8705),
	// by provider name; a provider without an entry requires no binding and allows the DPoP
	// proof algorithms of jose.DefaultAlgorithms with no clock skew.
	Bindings map[string]Binding
	// Replay remembers the jti of accepted DPoP proofs (RFC 9449 §11.1). nil: the Authorizer
	// makes its own; pass one to keep it across configuration reloads.
	Replay *replay.Cache
}

// Authorizer decides requests for one immutable configuration. Safe for concurrent use.
type Authorizer struct {
	routes *routeTable
	deps   Deps
	// claimHeaders are the headers any route forwards as a claim, sorted: every allowed
	// response sets or removes each, so a caller can never set x-subject itself on a route
	// that does not forward it (docs/decisions.md#the-allowed-response).
	claimHeaders []string
	noRoute      *metrics.RouteChecks // the decisions that selected no route (route "")
}

// New compiles routes; the routes must already be valid (the config package checks them), so an
// error here means a wiring mistake, such as a mode whose collaborator is missing.
func New(routes []Route, deps Deps) (*Authorizer, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.MaxTokenBytes <= 0 {
		deps.MaxTokenBytes = defaults.MaxTokenBytes
	}
	if deps.DecisionTimeout <= 0 {
		deps.DecisionTimeout = 5 * time.Second
	}
	if deps.Replay == nil {
		deps.Replay = replay.New(0)
	}
	for _, r := range routes {
		switch {
		case r.Auth == AuthJWT && deps.Verifier == nil:
			return nil, fmt.Errorf("route %q: jwt authentication needs a verifier", r.Name)
		case r.Auth == AuthClientCredentials && r.ClientsSelf && deps.Clients == nil:
			return nil, fmt.Errorf("route %q: clients: self needs the issuer", r.Name)
		case r.Auth == AuthClientCredentials && !r.ClientsSelf && r.Exchange == nil:
			return nil, fmt.Errorf("route %q: client_credentials verification needs a token_url source", r.Name)
		case r.Upstream == UpstreamToken && r.Source == nil:
			return nil, fmt.Errorf("route %q: the upstream token needs a source", r.Name)
		case r.Upstream != UpstreamToken && r.Source != nil:
			return nil, fmt.Errorf("route %q: a source without upstream mode token", r.Name)
		case r.Upstream != UpstreamToken && r.Upstream != UpstreamPassthrough && r.Upstream != UpstreamRemove:
			return nil, fmt.Errorf("route %q: no upstream mode", r.Name)
		}
	}
	t, err := newRouteTable(routes)
	if err != nil {
		return nil, err
	}
	t.setMetrics(deps.Metrics)
	for _, r := range t.ordered {
		r.compileBinding(deps.Bindings)
	}
	a := &Authorizer{routes: t, deps: deps, noRoute: deps.Metrics.RouteChecks("")}
	seen := map[string]bool{}
	for _, r := range routes {
		for h := range r.ForwardClaims {
			if !seen[h] {
				seen[h] = true
				a.claimHeaders = append(a.claimHeaders, h)
			}
		}
	}
	slices.Sort(a.claimHeaders)
	return a, nil
}

// caller is who was authenticated: the verified token's principal (AuthJWT), and what the
// route's upstream Source sees of the caller (for AuthClientCredentials, ClientID is the
// caller's client id and Verified the token its verification obtained, if any).
type caller struct {
	principal *verify.Principal
	upstream.Caller
}

// Decide judges one request. It never panics on any input and always returns a complete
// decision: a denial carries its status, challenge and body (docs/decisions.md#the-decision-table).
//
// The decision is written in place through the call chain (*Decision, *Request, *caller) rather
// than returned by value from each level: every Check runs on a new grpc-go goroutine whose stack
// grows by copying, and frames that each hold a Decision or two made the cached Check's stack
// deeper than grpc-go's own (issue 11).
func (a *Authorizer) Decide(ctx context.Context, req Request) (d Decision) {
	start := a.deps.Now()
	// Envoy's Check carries its ext_authz timeout; only a request with no deadline, or a later
	// one, needs ours (a timer per request is not free on the hot path).
	if dl, ok := ctx.Deadline(); !ok || dl.Sub(start) > a.deps.DecisionTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.deps.DecisionTimeout)
		defer cancel()
	}
	r := a.decide(ctx, &req, &d)
	checks := a.noRoute
	if r != nil {
		checks = r.checks
	}
	result := metrics.ResultAllowed
	switch {
	case d.Allowed:
	case d.Status == 503:
		result = metrics.ResultUnavailable
	default:
		result = metrics.ResultDenied
	}
	checks.Check(result, a.deps.Now().Sub(start))
	if !d.Allowed {
		a.logDenied(ctx, &d)
	} else if a.deps.Logger.Enabled(ctx, slog.LevelDebug) { // the attributes cost nothing when off
		a.logAllowed(ctx, &d)
	}
	return d
}

func (a *Authorizer) logDenied(ctx context.Context, d *Decision) {
	a.deps.Logger.LogAttrs(ctx, slog.LevelInfo, "request denied",
		slog.String("route", d.Route), slog.Int("status", d.Status),
		slog.String("reason", d.Reason), slog.String("token", d.TokenHash))
}

func (a *Authorizer) logAllowed(ctx context.Context, d *Decision) {
	a.deps.Logger.LogAttrs(ctx, slog.LevelDebug, "request allowed",
		slog.String("route", d.Route), slog.String("token", d.TokenHash))
}

// decide writes the decision into d and returns the selected route, nil when none fits.
func (a *Authorizer) decide(ctx context.Context, req *Request, d *Decision) *compiledRoute {
	// Routes are chosen by path prefix in normal form (docs/decisions.md#path-normal-form): a path no
	// normal form represents safely (/admin;/x, /public/../admin, %2F) could select one route here and
	// reach another upstream, so it fits no route. The check applies to a route Envoy names too: the
	// name does not make such a path safe for the upstream (a `;` parameter Tomcat strips), and Envoy
	// as shipped normalizes paths before ext_authz, so no legitimate request has one.
	path, ok := normalizePath(req.Path)
	if !ok {
		deny(d, accessDenied("the request path is not in normal form"))
		return nil
	}
	r, named := a.routes.selectCompiled(req.RouteName, req.Authority, path, req.Method)
	if r == nil {
		if named {
			deny(d, accessDenied("the route is unknown"))
		} else {
			deny(d, accessDenied("no route matches the request"))
		}
		return nil
	}
	var c caller
	if a.authenticate(ctx, r, req, &c, d) {
		a.allow(ctx, r, &c, d)
	}
	d.Route = r.Name
	return r
}

// authenticate fills c with the caller and reports true, or writes the denial into d and
// reports false. On success d holds only the caller's TokenHash.
func (a *Authorizer) authenticate(ctx context.Context, r *compiledRoute, req *Request, c *caller, d *Decision) bool {
	if r.Auth == AuthNone {
		return true
	}
	want, wantScheme := schemeBearer, "bearer"
	if r.Auth == AuthClientCredentials {
		want, wantScheme = schemeBasic, "basic"
	}
	cred, present, err := parseAuthorization(req.Authorization)
	// A jwt route takes the DPoP scheme too (RFC 9449 §7.1); bind checks what it implies.
	otherScheme := cred.scheme != wantScheme && (r.Auth != AuthJWT || cred.scheme != "dpop")
	if err != nil || tokenInQuery(req.Path) || !present || otherScheme {
		denyCredentials(d, want, req.Path, otherScheme, present, err)
		a.challengeDPoP(r, d, false)
		return false
	}
	usedDPoP := cred.scheme == "dpop"
	// server.max_token_bytes bounds every credential before it is decoded, whatever its scheme
	// (docs/configuration.md): a Basic value is base64-decoded, unescaped and its secret sent to
	// the IdP, so it is bounded like a token, not only by the transport's header limit.
	if len(cred.value) > a.deps.MaxTokenBytes {
		denyTooLarge(d, want, cred.value)
		a.challengeDPoP(r, d, usedDPoP)
		return false
	}
	if r.Auth == AuthClientCredentials {
		return a.authenticateClient(ctx, r.Route, req.ClientIP, cred.value, c, d)
	}
	p, err := a.deps.Verifier.Verify(ctx, cred.value, r.Providers)
	if err != nil {
		denyToken(d, err, cred.value)
		a.challengeDPoP(r, d, usedDPoP)
		return false
	}
	d.TokenHash = p.TokenHash // the verifier already hashed the token
	if (p.Cnf != nil || usedDPoP || r.binds) && !a.bind(ctx, r, req, cred.value, usedDPoP, p, d) {
		return false
	}
	if missing := missingScopes(p.Scopes, r.Scopes); missing {
		denyScope(r.Route, d)
		return false
	}
	for name, wantValue := range r.Claims {
		if !claimMatches(wantValue, p.Claims[name]) {
			denyClaim(name, d)
			return false
		}
	}
	c.principal = p
	c.Caller = upstream.Caller{Subject: p.Subject, ClientID: p.ClientID, Expiry: p.Expiry, Bearer: cred.value,
		BearerSum: p.TokenSum} // a mint route's key: the verifier already hashed the token
	return true
}

// deny, denyCredentials, denyToken, denyScope and denyClaim write a denial into d. They are
// never inlined: each denial is a Decision-sized temporary, and in the frame of the function on
// the hot path that returns it, it would deepen every Check's stack (see Decide).
//
//go:noinline
func deny(d *Decision, denial Decision) { *d = denial }

// denyCredentials is the denial of an unusable Authorization (RFC 6750 §3.1), in the order the
// checks apply: malformed, a token in the URI, none at all, another scheme.
//
//go:noinline
func denyCredentials(d *Decision, want scheme, path string, otherScheme, present bool, err error) {
	switch {
	case err != nil:
		*d = invalidRequest(want, err.Error())
	case tokenInQuery(path):
		*d = invalidRequest(want, "an access token in the URI is not accepted")
	case !present:
		*d = missingCredentials(want, "no credentials")
	case otherScheme:
		*d = missingCredentials(want, "credentials of another scheme")
	}
}

// denyToken is the denial of a Bearer token that failed verification.
//
//go:noinline
func denyToken(d *Decision, err error, token string) {
	*d = verifyDenial(err)
	d.TokenHash = shortHash(token)
}

// denyTooLarge is the denial of a credential above server.max_token_bytes: 401 invalid_token
// (docs/decisions.md#the-decision-table), with the challenge of the scheme the route takes.
//
//go:noinline
func denyTooLarge(d *Decision, want scheme, value string) {
	if want == schemeBasic {
		*d = tooLargeBasic()
	} else {
		*d = invalidToken("token is too large")
	}
	d.TokenHash = shortHash(value)
}

//go:noinline
func denyScope(r *Route, d *Decision) {
	hash := d.TokenHash
	*d = insufficientScope(r.Scopes)
	d.TokenHash = hash
}

//go:noinline
func denyClaim(name string, d *Decision) {
	hash := d.TokenHash
	*d = accessDenied("a required claim does not match")
	d.Reason = "claim " + name + " does not match"
	d.TokenHash = hash
}

// authenticateClient authenticates a client_credentials caller's Basic credentials value.
func (a *Authorizer) authenticateClient(ctx context.Context, r *Route, ip netip.Addr, value string, c *caller, d *Decision) bool {
	id, secret, err := basicCredentials(value)
	if err != nil {
		*d = invalidRequest(schemeBasic, err.Error())
		d.TokenHash = shortHash(value)
		return false
	}
	c.Caller = upstream.Caller{Subject: id, ClientID: id, ClientSecret: secret}
	*d = a.verifyClient(ctx, r, ip, &c.Caller)
	d.TokenHash = shortHash(id)
	return d.Status == 0
}

// verifyClient checks a client_credentials caller's secret, whatever the upstream mode
// (docs/configuration.md#rules-across-keys): at the route's IdP (the credentials are good when it
// issues a token for them; cached, one flight per credentials, at most 16 per route at once) or
// against the issuer's clients. Failures count in the shared failure limiter per (client id, caller
// IP) and per caller IP; a limited key is refused before the secret is looked at, good secret or
// not, so a guesser learns nothing and never reaches the IdP (RFC 6749 §2.3.1). It returns the zero
// Decision when the caller is verified.
func (a *Authorizer) verifyClient(ctx context.Context, r *Route, ip netip.Addr, c *upstream.Caller) Decision {
	if a.deps.Limiter != nil {
		if wait, ok := a.deps.Limiter.Allow(c.ClientID, ip); !ok {
			return slowDown(wait)
		}
	}
	if r.ClientsSelf {
		if a.deps.Clients.VerifyClientSecret(c.ClientID, c.ClientSecret) {
			return Decision{}
		}
		a.fail(c.ClientID, ip)
		return invalidClient()
	}
	tok, err := r.Exchange.Token(ctx, *c)
	switch {
	case err == nil:
		c.Verified = tok
		return Decision{}
	case rejected(err):
		a.fail(c.ClientID, ip)
		return invalidClient()
	}
	// The IdP is down, slow or busy: the caller did nothing wrong, and nothing is counted.
	return unavailable("the client credentials could not be verified", "client verification failed: "+err.Error())
}

// rejected reports whether err says the caller's own credentials were refused (RFC 6749 §5.2
// invalid_client), rather than that no credential could be had (503).
func rejected(err error) bool {
	return errors.Is(err, upstream.ErrRejected) && !errors.Is(err, upstream.ErrUnavailable)
}

func (a *Authorizer) fail(clientID string, ip netip.Addr) {
	if a.deps.Limiter != nil {
		a.deps.Limiter.Fail(clientID, ip)
	}
}

func verifyDenial(err error) Decision {
	var ve *verify.Error
	if errors.As(err, &ve) {
		if ve.Kind == verify.KindUnavailable {
			return unavailable("the token issuer's keys are not available", ve.Description)
		}
		return invalidToken(ve.Description)
	}
	// An error the verifier did not classify: fail closed without echoing it.
	return invalidToken("token is invalid")
}

// claimMatches compares a route's required claim with the token's by JSON type
// (docs/decisions.md#the-allowed-response): a string only a JSON string, a boolean only a JSON
// boolean, a number only a JSON number of that value; a token claim that is an array matches when
// one element does. Anything else (objects, null, a missing claim) never matches: fail closed.
func claimMatches(want, got any) bool {
	if arr, ok := got.([]any); ok {
		return slices.ContainsFunc(arr, func(e any) bool { return scalarMatches(want, e) })
	}
	return scalarMatches(want, got)
}

func scalarMatches(want, got any) bool {
	switch w := want.(type) {
	case string:
		g, ok := got.(string)
		return ok && g == w
	case bool:
		g, ok := got.(bool)
		return ok && g == w
	case json.Number:
		return numberEquals(w.String(), got)
	case float64:
		return numberEquals(strconv.FormatFloat(w, 'g', -1, 64), got)
	case int:
		return numberEquals(strconv.Itoa(w), got)
	}
	return false
}

// numberEquals compares decimal numbers exactly ("5", "5.0" and "5e0" are one value), so a
// large integer claim is never rounded into another.
func numberEquals(want string, got any) bool {
	var g string
	switch x := got.(type) {
	case json.Number:
		g = x.String()
	case float64:
		g = strconv.FormatFloat(x, 'g', -1, 64)
	default:
		return false
	}
	wr, ok1 := new(big.Rat).SetString(want)
	gr, ok2 := new(big.Rat).SetString(g)
	return ok1 && ok2 && wr.Cmp(gr) == 0
}

func missingScopes(have, required []string) bool {
	for _, s := range required {
		if !slices.Contains(have, s) {
			return true
		}
	}
	return false
}

// allow obtains the upstream credential and completes the allow decision in d.
func (a *Authorizer) allow(ctx context.Context, r *compiledRoute, c *caller, d *Decision) {
	d.Allowed = true
	switch r.Upstream {
	case UpstreamPassthrough:
		d.Passthrough = true
	case UpstreamRemove:
		d.RemoveHeaders = append(d.RemoveHeaders, "authorization")
	case UpstreamToken:
		tok, err := r.Source.Token(ctx, c.Caller)
		if err != nil {
			denyUpstream(err, d)
			return
		}
		h := r.header(tok.AccessToken)
		if len(a.claimHeaders) == 0 {
			d.SetHeaders = h.set // shared and read-only: see upstreamHeader
		} else {
			d.SetHeaders = append(make([]HeaderValue, 0, 1+len(a.claimHeaders)), h.set[0])
		}
		d.upstream = h
	}
	a.forwardClaims(d, r.Route, c)
	d.Metadata = metadata(r.Route, c)
}

// upstreamHeader is the Authorization header for one upstream token, built once and shared by
// every Check that sends that token: the decision's SetHeaders and the gRPC answer's header.
// Nothing modifies it after header builds it (set has capacity 1, so an append copies).
type upstreamHeader struct {
	token string                    // the upstream access token
	set   []HeaderValue             // [authorization: Bearer token]
	grpc  *corev3.HeaderValueOption // its CheckResponse form
}

// header returns the route's upstreamHeader for token, building it when the route's last token
// was another: a fetch route sends one token to every caller until it is refreshed, a mint route
// one per caller.
func (r *compiledRoute) header(token string) *upstreamHeader {
	if h := r.upstreamHeader.Load(); h != nil && h.token == token {
		return h
	}
	v := "Bearer " + token
	h := &upstreamHeader{token: token, set: []HeaderValue{{Name: "authorization", Value: v}}, grpc: header("authorization", v)}
	h.set = h.set[:1:1]
	r.upstreamHeader.Store(h)
	return h
}

//go:noinline
func denyUpstream(err error, d *Decision) {
	hash := d.TokenHash
	*d = upstreamDenial(err)
	d.TokenHash = hash
}

func upstreamDenial(err error) Decision {
	if errors.Is(err, upstream.ErrExchangeRefused) {
		// The IdP will not exchange this caller's token for the upstream's (RFC 8693 §2.2.2):
		// the caller may not reach it, as with a missing scope (docs/decisions.md#the-decision-table).
		d := accessDenied("the token cannot be exchanged for this upstream")
		d.Reason = err.Error()
		return d
	}
	if rejected(err) {
		return invalidClient() // the caller's own credentials, exchanged upstream, were refused
	}
	reason := "upstream credential unavailable"
	if ue := (*upstream.Error)(nil); errors.As(err, &ue) && ue.Mode == upstream.ModeMint {
		reason = "minting failed"
	}
	// The error text is ours (the upstream package never includes an IdP body or a secret), so
	// it may go to the log; the client gets a fixed description.
	return unavailable("the upstream credential is unavailable", reason+": "+err.Error())
}

// forwardClaims sets each configured claim header from the verified claims; a header whose
// claim the token lacks is removed, and so is every header another route forwards as a claim,
// so a caller can never inject one (docs/decisions.md#the-allowed-response).
func (a *Authorizer) forwardClaims(d *Decision, r *Route, c *caller) {
	for _, h := range a.claimHeaders { // sorted: a stable header order keeps responses reproducible
		claim, forwarded := r.ForwardClaims[h]
		if !forwarded {
			d.RemoveHeaders = append(d.RemoveHeaders, h)
			continue
		}
		if v, ok := claimValue(claim, c); ok {
			d.SetHeaders = append(d.SetHeaders, HeaderValue{Name: h, Value: v})
		} else {
			d.RemoveHeaders = append(d.RemoveHeaders, h)
		}
	}
}

// claimValue renders a claim for a header: arrays joined with spaces, numbers in decimal,
// objects as JSON (docs/decisions.md#the-allowed-response). Values that cannot be a header
// value are treated as absent.
func claimValue(claim string, c *caller) (string, bool) {
	var v any
	switch {
	case c.principal != nil:
		if scope := c.principal.Scope(); claim == "scope" && scope != "" {
			v = scope // the scopes joined with spaces: covers `scp` arrays too
		} else {
			var has bool
			if v, has = c.principal.Claims[claim]; !has {
				return "", false
			}
		}
	case c.ClientID != "" && (claim == "client_id" || claim == "sub"):
		v = c.ClientID // a client_credentials caller
	default:
		return "", false
	}
	s, ok := claimString(v)
	if !ok || s == "" || !headerSafe(s) {
		return "", false
	}
	return s, true
}

// claimString formats a JSON claim value as text.
func claimString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := claimString(e)
			if !ok {
				return "", false
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, " "), true
	case []string:
		return strings.Join(x, " "), true
	case map[string]any:
		b, err := json.Marshal(x)
		if err != nil {
			return "", false
		}
		return string(b), true
	case nil:
		return "", false
	}
	return "", false
}

// headerSafe refuses control characters, which would let a claim split or smuggle headers.
func headerSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func metadata(r *Route, c *caller) map[string]string {
	m := map[string]string{"route": r.Name}
	put := func(k, v string) {
		if v = dropControl(v); v != "" {
			m[k] = v
		}
	}
	if p := c.principal; p != nil {
		put("sub", p.Subject)
		put("iss", p.Issuer)
		put("client_id", p.ClientID)
		put("scope", p.Scope())
	} else if c.ClientID != "" { // a client_credentials caller
		put("sub", c.ClientID)
		put("client_id", c.ClientID)
	}
	return m
}

// dropControl removes control characters (C0, DEL) from a metadata value: access logs are
// line-based, and a claim with CR/LF would forge log lines.
func dropControl(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f { // non-ASCII may hold C1 controls: look closer
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, s)
}

// shortHash names a credential in logs without revealing it: 16 hex digits of its SHA-256.
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}
