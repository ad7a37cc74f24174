package extauthz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/upstream"
	"github.com/tokengate/tokengate/internal/verify"
)

// Verifier verifies a caller's Bearer JWT against the named providers.
// Implemented by *verify.Verifier; errors are *verify.Error.
type Verifier interface {
	Verify(ctx context.Context, token string, providers []string) (*verify.Principal, error)
}

// TokenCache obtains upstream tokens: cached, refreshed ahead of expiry, one IdP call or mint
// for any number of concurrent requests. Implemented by *upstream.Cache.
type TokenCache interface {
	FetchSource(ctx context.Context, s *upstream.Source) (upstream.Token, error)
	Exchange(ctx context.Context, route string, cc upstream.ClientCredentials) (upstream.Token, error)
	Mint(ctx context.Context, route, key string, timeout time.Duration, mint func(context.Context) (upstream.Token, error)) (upstream.Token, error)
}

// MintRequest is a token a `mint` route asks the built-in issuer to sign.
type MintRequest struct {
	Subject, ClientID, Audience string
	Scopes                      []string
	TTL                         time.Duration
	NotAfter                    time.Time // the caller's own token's exp: a minted token never outlives it
}

// Minter signs upstream tokens for `mint` routes (the built-in issuer).
type Minter interface {
	Mint(ctx context.Context, r MintRequest) (upstream.Token, error)
	// KeyEpoch changes whenever the published signing keys change, so that cached minted
	// tokens signed by a key that is no longer published are never served.
	KeyEpoch() string
}

// Request is one request to authorize, whatever the transport.
type Request struct {
	RouteName     string   // Envoy's context_extensions["route"], "" when absent
	Authority     string   // :authority / Host, with or without port
	Path          string   // :path, with query
	Method        string   // :method
	Authorization []string // every Authorization header value (Envoy joins repeats with commas)
	// ClientIP is the caller's address for the failure limiter (SPEC section 6): gRPC
	// attributes.source.address, or for forward-auth the peer / trusted X-Forwarded-For.
	ClientIP netip.Addr
}

// Deps are the collaborators an Authorizer calls.
type Deps struct {
	Verifier      Verifier   // required when a route authenticates with jwt
	Tokens        TokenCache // required for mint, fetch and exchanged routes
	Minter        Minter     // required for mint routes
	MaxTokenBytes int        // an Authorization credential above this is refused before parsing
	// DecisionTimeout bounds one decision when the caller set no earlier deadline (forward-auth
	// requests carry none; Envoy's gRPC Check carries its ext_authz timeout). Default 5 s.
	DecisionTimeout time.Duration
	Logger          *slog.Logger
	Metrics         *metrics.Metrics
	Now             func() time.Time
}

// Authorizer decides requests for one immutable configuration. Safe for concurrent use.
type Authorizer struct {
	routes  *routeTable
	deps    Deps
	sources map[string]*upstream.Source // fetch routes: the cache key is computed once, not per request
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
		deps.MaxTokenBytes = 8192
	}
	if deps.DecisionTimeout <= 0 {
		deps.DecisionTimeout = 5 * time.Second
	}
	for _, r := range routes {
		switch {
		case r.Auth == AuthJWT && deps.Verifier == nil:
			return nil, fmt.Errorf("route %q: jwt authentication needs a verifier", r.Name)
		case (r.Upstream == UpstreamMint || r.Upstream == UpstreamFetch || r.Upstream == UpstreamExchanged) && deps.Tokens == nil:
			return nil, fmt.Errorf("route %q: upstream %s needs a token cache", r.Name, r.Upstream)
		case r.Upstream == UpstreamMint && deps.Minter == nil:
			return nil, fmt.Errorf("route %q: upstream mint needs the issuer", r.Name)
		case r.Upstream == UpstreamExchanged && r.Auth != AuthClientCredentials:
			return nil, fmt.Errorf("route %q: upstream exchanged needs client_credentials authentication", r.Name)
		}
	}
	t, err := newRouteTable(routes)
	if err != nil {
		return nil, err
	}
	a := &Authorizer{routes: t, deps: deps, sources: map[string]*upstream.Source{}}
	for _, r := range routes {
		if r.Upstream == UpstreamFetch {
			a.sources[r.Name] = upstream.NewSource(r.Name, r.Fetch)
		}
	}
	return a, nil
}

// caller is who was authenticated, in the terms the upstream modes need.
type caller struct {
	principal *verify.Principal // AuthJWT
	clientID  string            // AuthClientCredentials
	secret    string            // AuthClientCredentials (never logged)
	token     string            // the caller's Bearer token (AuthJWT)
}

// Decide judges one request. It never panics on any input and always returns a complete
// decision: a denial carries its status, challenge and body (SPEC section 5).
func (a *Authorizer) Decide(ctx context.Context, req Request) Decision {
	start := a.deps.Now()
	// Envoy's Check carries its ext_authz timeout; only a request with no deadline, or a later
	// one, needs ours (a timer per request is not free on the hot path).
	if dl, ok := ctx.Deadline(); !ok || dl.Sub(start) > a.deps.DecisionTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.deps.DecisionTimeout)
		defer cancel()
	}
	d := a.decide(ctx, req)
	result := metrics.ResultAllowed
	switch {
	case d.Allowed:
	case d.Status == 503:
		result = metrics.ResultUnavailable
	default:
		result = metrics.ResultDenied
	}
	a.deps.Metrics.Check(d.Route, result, a.deps.Now().Sub(start))
	if !d.Allowed {
		a.deps.Logger.LogAttrs(ctx, slog.LevelInfo, "request denied",
			slog.String("route", d.Route), slog.Int("status", d.Status),
			slog.String("reason", d.Reason), slog.String("token", d.TokenHash))
	} else {
		a.deps.Logger.LogAttrs(ctx, slog.LevelDebug, "request allowed",
			slog.String("route", d.Route), slog.String("token", d.TokenHash))
	}
	return d
}

func (a *Authorizer) decide(ctx context.Context, req Request) Decision {
	if req.RouteName == "" && !normalPath(req.Path) {
		// Routes are chosen by path prefix: a path whose normal form differs (/public/../admin)
		// could select one route here and reach another upstream, so it fits no route.
		return accessDenied("the request path is not in normal form")
	}
	r, named := a.routes.selectRoute(req.RouteName, req.Authority, req.Path, req.Method)
	if r == nil {
		if named {
			return accessDenied("the route is unknown")
		}
		return accessDenied("no route matches the request")
	}
	d := a.authenticateAndForward(ctx, r, req)
	d.Route = r.Name
	return d
}

func (a *Authorizer) authenticateAndForward(ctx context.Context, r *Route, req Request) Decision {
	c, d, ok := a.authenticate(ctx, r, req)
	if !ok {
		return d
	}
	return a.allow(ctx, r, c, d.TokenHash)
}

// authenticate returns the caller, or the denial when ok is false.
func (a *Authorizer) authenticate(ctx context.Context, r *Route, req Request) (c caller, d Decision, ok bool) {
	if r.Auth == AuthNone {
		return caller{}, Decision{}, true
	}
	want, wantScheme := schemeBearer, "bearer"
	if r.Auth == AuthClientCredentials {
		want, wantScheme = schemeBasic, "basic"
	}
	cred, present, err := parseAuthorization(req.Authorization)
	switch {
	case err != nil:
		return c, invalidRequest(want, err.Error()), false
	case tokenInQuery(req.Path):
		return c, invalidRequest(want, "an access token in the URI is not accepted"), false
	case !present:
		return c, missingCredentials(want, "no credentials"), false
	case cred.scheme != wantScheme:
		return c, missingCredentials(want, "credentials of another scheme"), false
	}
	if r.Auth == AuthClientCredentials {
		id, secret, err := basicCredentials(cred.value)
		if err != nil {
			d = invalidRequest(want, err.Error())
			d.TokenHash = shortHash(cred.value)
			return c, d, false
		}
		return caller{clientID: id, secret: secret}, Decision{TokenHash: shortHash(id)}, true
	}

	if len(cred.value) > a.deps.MaxTokenBytes {
		d = invalidToken("token is too large")
		d.TokenHash = shortHash(cred.value)
		return c, d, false
	}
	p, err := a.deps.Verifier.Verify(ctx, cred.value, r.Providers)
	if err != nil {
		d = verifyDenial(err)
		d.TokenHash = shortHash(cred.value)
		return c, d, false
	}
	hash := p.TokenHash // the verifier already hashed the token
	if missing := missingScopes(p.Scopes, r.Scopes); missing {
		d = insufficientScope(r.Scopes)
		d.TokenHash = hash
		return c, d, false
	}
	for name, wantValue := range r.Claims {
		v, has := p.Claims[name]
		got, ok := claimString(v)
		want, wantOK := claimString(wantValue)
		if !has || !ok || !wantOK || got != want {
			d = accessDenied("a required claim does not match")
			d.Reason = "claim " + name + " does not match"
			d.TokenHash = hash
			return c, d, false
		}
	}
	return caller{principal: p, token: cred.value}, Decision{TokenHash: hash}, true
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

func missingScopes(have, required []string) bool {
	for _, s := range required {
		if !slices.Contains(have, s) {
			return true
		}
	}
	return false
}

// allow obtains the upstream credential and builds the allow decision.
func (a *Authorizer) allow(ctx context.Context, r *Route, c caller, hash string) Decision {
	d := Decision{Allowed: true, TokenHash: hash}
	switch r.Upstream {
	case UpstreamPassthrough:
		d.Passthrough = true
	case UpstreamRemove:
		d.RemoveHeaders = append(d.RemoveHeaders, "authorization")
	case UpstreamMint, UpstreamFetch, UpstreamExchanged:
		tok, err := a.upstreamToken(ctx, r, c)
		if err != nil {
			deny := upstreamDenial(r, err)
			deny.TokenHash = d.TokenHash
			return deny
		}
		d.SetHeaders = append(d.SetHeaders, HeaderValue{Name: "authorization", Value: "Bearer " + tok.AccessToken})
	}
	a.forwardClaims(&d, r, c)
	d.Metadata = metadata(r, c)
	return d
}

func (a *Authorizer) upstreamToken(ctx context.Context, r *Route, c caller) (upstream.Token, error) {
	switch r.Upstream {
	case UpstreamFetch:
		return a.deps.Tokens.FetchSource(ctx, a.sources[r.Name])
	case UpstreamExchanged:
		cc := r.Exchange
		cc.ClientID, cc.ClientSecret = c.clientID, c.secret
		return a.deps.Tokens.Exchange(ctx, r.Name, cc)
	default: // UpstreamMint
		req := MintRequest{Audience: r.Mint.Audience, Scopes: r.Mint.Scopes, TTL: r.Mint.TTL}
		key := r.Name + "\x00" + a.deps.Minter.KeyEpoch()
		if p := c.principal; p != nil {
			req.Subject, req.ClientID, req.NotAfter = p.Subject, p.ClientID, p.Expiry
			if req.Subject == "" { // RFC 9068 §2.2 requires sub; a client token may lack one
				req.Subject = p.ClientID
			}
			// The full hash of the caller's token: two callers never share a minted token.
			sum := sha256.Sum256([]byte(c.token))
			key += "\x00" + hex.EncodeToString(sum[:])
		} else if c.clientID != "" {
			req.Subject, req.ClientID = c.clientID, c.clientID
			key += "\x00client\x00" + c.clientID
		}
		return a.deps.Tokens.Mint(ctx, r.Name, key, r.Mint.Timeout, func(ctx context.Context) (upstream.Token, error) {
			return a.deps.Minter.Mint(ctx, req)
		})
	}
}

func upstreamDenial(r *Route, err error) Decision {
	if r.Upstream == UpstreamExchanged && errors.Is(err, upstream.ErrRejected) {
		return invalidClient()
	}
	reason := "upstream credential unavailable"
	if r.Upstream == UpstreamMint {
		reason = "minting failed"
	}
	// The error text is ours (the upstream package never includes an IdP body or a secret), so
	// it may go to the log; the client gets a fixed description.
	return unavailable("the upstream credential is unavailable", reason+": "+err.Error())
}

// forwardClaims sets each configured claim header from the verified claims; a header whose
// claim the token lacks is removed, so a caller can never inject it.
func (a *Authorizer) forwardClaims(d *Decision, r *Route, c caller) {
	if len(r.ForwardClaims) == 0 {
		return
	}
	names := make([]string, 0, len(r.ForwardClaims))
	for h := range r.ForwardClaims {
		names = append(names, h)
	}
	slices.Sort(names) // a stable header order keeps responses reproducible
	for _, h := range names {
		v, ok := claimValue(r.ForwardClaims[h], c)
		if ok {
			d.SetHeaders = append(d.SetHeaders, HeaderValue{Name: h, Value: v})
		} else {
			d.RemoveHeaders = append(d.RemoveHeaders, h)
		}
	}
}

// claimValue renders a claim for a header: arrays joined with spaces, numbers in decimal,
// objects as JSON (SPEC section 5). Values that cannot be a header value are treated as absent.
func claimValue(claim string, c caller) (string, bool) {
	var v any
	switch {
	case c.principal != nil:
		if claim == "scope" && len(c.principal.Scopes) > 0 {
			v = strings.Join(c.principal.Scopes, " ") // covers `scp` arrays too
		} else {
			var has bool
			if v, has = c.principal.Claims[claim]; !has {
				return "", false
			}
		}
	case c.clientID != "" && (claim == "client_id" || claim == "sub"):
		v = c.clientID
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

func metadata(r *Route, c caller) map[string]string {
	m := map[string]string{"route": r.Name}
	put := func(k, v string) {
		if v != "" {
			m[k] = v
		}
	}
	if p := c.principal; p != nil {
		put("sub", p.Subject)
		put("iss", p.Issuer)
		put("client_id", p.ClientID)
		put("scope", strings.Join(p.Scopes, " "))
	} else if c.clientID != "" {
		put("sub", c.clientID)
		put("client_id", c.clientID)
	}
	return m
}

// shortHash names a credential in logs without revealing it: 16 hex digits of its SHA-256.
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}
