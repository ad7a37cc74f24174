// Package verify verifies the Bearer JWTs presented to the ext_authz server (RFC 6750, RFC 7519,
// RFC 9068) against the key sets of the configured providers.
//
// Verification happens in this order, cheapest and most discriminating first, so that a token
// that will fail anyway never triggers a JWKS fetch: size; structure (jose.Parse: segments,
// base64url, JSON, forbidden header parameters); provider selection by the token's
// (still untrusted) iss among the route's providers; the provider's alg allow-list and typ;
// key lookup in THAT provider's set only (RFC 8725 §3.8: two IdPs may publish the same kid);
// signature (jose); then our own claim checks (exp, nbf, iat, lifetime, iss, aud), since jwx
// treats a zero exp as absent (docs/security.md#jose-hardening).
package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokengate/tokengate/internal/defaults"
	"github.com/tokengate/tokengate/internal/introspect"
	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/jwks"
	"github.com/tokengate/tokengate/internal/metrics"
)

const cacheName = "verified_tokens"

// Provider is one trusted token issuer.
type Provider struct {
	Name, Issuer string // Issuer: the exact iss of its tokens (for `issuer: self`, the issuer URL)
	JWKSURI      string // remote keys: a JWK Set URL, or
	Discovery    bool   // Issuer + /.well-known/openid-configuration names it; or
	StaticJWKS   []byte // in-process keys (the built-in issuer): no HTTP
	// Audiences: a token's aud must contain one of them (RFC 7519 §4.1.3). Required for remote
	// keys; a static provider without any accepts no token (never "any audience").
	Audiences  []string
	Algorithms []string
	ClockSkew  time.Duration
	// RefreshInterval: JWKS refresh period (default defaults.RefreshInterval); MaxTokenLifetime: exp-iat, or exp-now
	// without iat, above it is refused (default defaults.MaxTokenLifetime).
	RefreshInterval, MaxTokenLifetime time.Duration
	RequireTyp                        string
	// Introspection, when set, makes this an opaque-token provider (RFC 7662): it has no keys,
	// Issuer and Audiences are optional, and tokens are judged by its answers (introspection.go).
	Introspection *introspect.Client
}

// Options configure a Verifier.
type Options struct {
	Providers     []Provider
	CacheSize     int // verified-token LRU entries; 0 disables the cache
	MaxTokenBytes int // default defaults.MaxTokenBytes
	HTTPClient    *http.Client
	AllowHTTP     bool
	Logger        *slog.Logger
	Metrics       *metrics.Metrics
	Now           func() time.Time
	// KeepClaims names the claims some route reads from Principal.Claims (its `claims` and
	// `forward_claims`): the Claims of a verified token then hold only these, copied out of
	// the token, so that a cached entry is a few hundred bytes rather than the whole claim set
	// (issue 11). nil keeps every claim (Claims then shares the token's decoded payload); an
	// empty non-nil list keeps none.
	KeepClaims []string
	// Previous is the Verifier this one replaces on a configuration reload: the key sources
	// of providers whose key settings are unchanged are shared (no refetch). A shared source
	// stops when the last Verifier using it closes, so Previous.Close does not stop it.
	Previous *Verifier

	// tune adjusts the options of remote key sources (tests only).
	tune func(*jwks.Options)
}

// Principal is the verified caller. It is shared with the verified-token cache: read only.
type Principal struct {
	Provider, Issuer, Subject, ClientID string
	Scopes                              []string // shared with every Principal of the same list
	// scopes is the shared set Scopes comes from, with the list joined (Scope); nil for none.
	// A pointer rather than the joined string: it keeps a cache entry in its size class.
	scopes           *scopeSet
	Expiry, IssuedAt time.Time
	// Claims holds the verified claims (numbers as json.Number): every claim, or only those
	// Options.KeepClaims names (nil when the token has none of them).
	Claims    map[string]any
	TokenHash string // first 16 hex chars of sha256(token), for logs
	// TokenSum is the SHA-256 of the token, the verified-token cache's key: another cache keyed
	// by the caller's token (a mint route's) need not hash it again.
	TokenSum [sha256.Size]byte
	ID       string // jti
	// Cnf is the token's confirmation (RFC 7800 §3.1 cnf), kept whatever KeepClaims says; nil
	// for a token without one.
	Cnf *Confirmation
}

// Scope is Scopes joined with spaces (RFC 6749 §3.3), "" for none: the text of the scope
// metadata and of a forwarded scope claim, joined once per distinct list rather than per Check.
func (p *Principal) Scope() string {
	if p.scopes == nil {
		return strings.Join(p.Scopes, " ") // a Principal the Verifier did not build
	}
	return p.scopes.joined
}

// Confirmation holds a cnf claim's jkt (RFC 9449 §6.1) and x5t#S256 (RFC 8705 §3.1). Both
// empty: the cnf binds the token to no proof tokengate checks, which nothing satisfies.
type Confirmation struct{ JKT, X5T string }

// Verifier verifies tokens; safe for concurrent use.
type Verifier struct {
	providers map[string]*provider
	order     []*provider
	maxBytes  int
	now       func() time.Time
	log       *slog.Logger
	metrics   *metrics.Metrics
	keep      []string // Options.KeepClaims; nil: every claim
	scopes    scopeSets
	cache     *tokenCache // nil when disabled

	closeOnce sync.Once

	signatureChecks atomic.Int64 // tests: proves cache hits skip signature work
}

type provider struct {
	cfg       Provider
	algs      []string
	audiences map[string]bool
	key       sourceKey
	src       jwks.Source
	shared    *sharedSource
	intro     *introspect.Client // an introspection provider: no key source
}

// sharedSource is a key source used by one or more Verifiers (a reload hands it from one
// generation to the next). It stops when the last Verifier using it closes, so that neither
// the old Verifier's Close after a reload nor the new one's Close after a failed reload stops
// keys the other still serves with.
type sharedSource struct {
	src  jwks.Source
	mu   sync.Mutex
	refs int
}

// acquire adds a user unless the source has already stopped.
func (s *sharedSource) acquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refs == 0 {
		return false
	}
	s.refs++
	return true
}

// release drops a user and stops the source after the last one.
func (s *sharedSource) release() {
	s.mu.Lock()
	s.refs--
	last := s.refs == 0
	s.mu.Unlock()
	if last {
		s.src.Close()
	}
}

// sourceKey holds every setting a key source depends on: equal keys share a source on reload.
type sourceKey struct {
	name, issuer, jwksURI string
	discovery, allowHTTP  bool
	refresh               time.Duration
	static                [sha256.Size]byte
	isStatic              bool
	client                *http.Client
}

// New checks the options, builds the key sources and starts their first fetch in the
// background; it never waits for the network. ctx provides values only (see jwks.NewRemote).
func New(ctx context.Context, opts Options) (*Verifier, error) {
	v := &Verifier{
		providers: make(map[string]*provider, len(opts.Providers)),
		maxBytes:  opts.MaxTokenBytes,
		now:       opts.Now,
		log:       opts.Logger,
		metrics:   opts.Metrics,
	}
	if opts.KeepClaims != nil {
		v.keep = append([]string{}, opts.KeepClaims...)
	}
	if v.maxBytes == 0 {
		v.maxBytes = defaults.MaxTokenBytes
	}
	if v.maxBytes < 0 || opts.CacheSize < 0 {
		return nil, errors.New("verify: negative size")
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	for i := range opts.Providers {
		p, err := newProvider(opts.Providers[i], opts)
		if err != nil {
			return nil, err
		}
		if _, dup := v.providers[p.cfg.Name]; dup {
			return nil, fmt.Errorf("verify: provider %s: duplicate name", p.cfg.Name)
		}
		if len(p.audiences) == 0 && p.intro == nil {
			v.log.Warn("provider has no audiences: it accepts no token", "provider", p.cfg.Name)
		}
		v.providers[p.cfg.Name] = p
		v.order = append(v.order, p)
	}
	if opts.CacheSize > 0 {
		v.cache = newTokenCache(opts.CacheSize)
	}
	// Key sources last, once nothing else can fail but a source itself.
	for _, p := range v.order {
		if p.intro != nil {
			continue
		}
		if sh := opts.Previous.share(p.key); sh != nil {
			p.shared, p.src = sh, sh.src
			continue
		}
		src, err := newSource(ctx, p, opts, v.now, v.log)
		if err != nil {
			v.Close() // releases what was acquired so far
			return nil, err
		}
		p.shared, p.src = &sharedSource{src: src, refs: 1}, src
	}
	return v, nil
}

func newProvider(cfg Provider, opts Options) (*provider, error) {
	cfg.Audiences = slices.Clone(cfg.Audiences)
	cfg.Algorithms = slices.Clone(cfg.Algorithms)
	cfg.StaticJWKS = bytes.Clone(cfg.StaticJWKS)
	name := cfg.Name
	if name == "" {
		return nil, errors.New("verify: provider without a name")
	}
	if cfg.Introspection != nil {
		return newIntrospectionProvider(cfg)
	}
	if cfg.Issuer == "" {
		return nil, fmt.Errorf("verify: provider %s: issuer is required", name)
	}
	sources := 0
	for _, set := range []bool{cfg.JWKSURI != "", cfg.Discovery, cfg.StaticJWKS != nil} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return nil, fmt.Errorf("verify: provider %s: exactly one of jwks_uri, discovery and static keys is required", name)
	}
	static := cfg.StaticJWKS != nil
	if len(cfg.Audiences) == 0 && !static {
		// An external IdP serves many audiences: accepting any would accept tokens minted for
		// other services (RFC 9068 §4, RFC 8725 §3.9).
		return nil, fmt.Errorf("verify: provider %s: audiences are required", name)
	}
	// A static provider (the built-in issuer) without audiences is allowed but accepts no
	// token: an empty list never means "any" (issue 9, finding 5: a token a mint route signed
	// for an upstream must not pass `self` routes). The caller passes the audiences the
	// issuer's clients may ask for when the configuration lists none
	// (docs/configuration.md#providers).
	aud := make(map[string]bool, len(cfg.Audiences))
	for _, a := range cfg.Audiences {
		if a == "" {
			return nil, fmt.Errorf("verify: provider %s: empty audience", name)
		}
		aud[a] = true
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = jose.DefaultAlgorithms()
	}
	for _, a := range cfg.Algorithms {
		if !jose.IsVerificationAlgorithm(a) {
			return nil, fmt.Errorf("verify: provider %s: algorithm %q is not supported", name, a)
		}
	}
	if cfg.ClockSkew < 0 || cfg.RefreshInterval < 0 || cfg.MaxTokenLifetime < 0 {
		return nil, fmt.Errorf("verify: provider %s: negative duration", name)
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = defaults.RefreshInterval
	}
	if cfg.MaxTokenLifetime == 0 {
		cfg.MaxTokenLifetime = defaults.MaxTokenLifetime
	}
	p := &provider{cfg: cfg, algs: cfg.Algorithms, audiences: aud}
	p.key = sourceKey{name: name, issuer: cfg.Issuer, isStatic: static}
	if static {
		p.key.static = sha256.Sum256(cfg.StaticJWKS)
	} else {
		p.key.jwksURI, p.key.discovery = cfg.JWKSURI, cfg.Discovery
		p.key.allowHTTP, p.key.refresh, p.key.client = opts.AllowHTTP, cfg.RefreshInterval, opts.HTTPClient
	}
	return p, nil
}

func newSource(ctx context.Context, p *provider, opts Options, now func() time.Time, log *slog.Logger) (jwks.Source, error) {
	if p.key.isStatic {
		src, dropped, err := jwks.NewStatic(p.cfg.StaticJWKS)
		if err != nil {
			return nil, fmt.Errorf("verify: provider %s: static keys: %w", p.cfg.Name, err)
		}
		if len(dropped) > 0 {
			log.Warn("static keys dropped", "provider", p.cfg.Name, "reasons", dropped)
		}
		return src, nil
	}
	jo := jwks.Options{
		Name: p.cfg.Name, Issuer: p.cfg.Issuer, JWKSURI: p.cfg.JWKSURI, Discovery: p.cfg.Discovery,
		RefreshInterval: p.cfg.RefreshInterval, HTTPClient: opts.HTTPClient, AllowHTTP: opts.AllowHTTP,
		Logger: log, Metrics: opts.Metrics, Now: now,
	}
	if opts.tune != nil {
		opts.tune(&jo)
	}
	src, err := jwks.NewRemote(ctx, jo)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return src, nil
}

// share returns v's running key source for key k, with one more user, or nil.
func (v *Verifier) share(k sourceKey) *sharedSource {
	if v == nil {
		return nil
	}
	for _, p := range v.order {
		if p.key == k && p.shared != nil && p.shared.acquire() {
			return p.shared
		}
	}
	return nil
}

// Close releases this Verifier's key sources; each stops once no other Verifier (a
// successor, or the predecessor still serving after a failed reload) uses it. Idempotent.
func (v *Verifier) Close() {
	v.closeOnce.Do(func() {
		for _, p := range v.order {
			if p.shared != nil {
				p.shared.release()
			}
		}
	})
}

// Missing lists, for /readyz, the providers whose keys have never loaded.
func (v *Verifier) Missing() []string {
	var out []string
	for _, p := range v.order {
		if p.src != nil && p.src.Keys() == nil {
			out = append(out, "provider "+p.cfg.Name+": keys not loaded")
		}
	}
	return out
}

// WaitReady returns nil once every provider's keys have loaded, or ctx's error.
func (v *Verifier) WaitReady(ctx context.Context) error {
	for _, p := range v.order {
		if p.src == nil {
			continue
		}
		select {
		case <-p.src.Ready():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Verify verifies token for a route that trusts the named providers. Errors are *Error.
func (v *Verifier) Verify(ctx context.Context, token string, providers []string) (*Principal, error) {
	if len(token) > v.maxBytes {
		return nil, invalid(DescTooLarge, nil)
	}
	if token == "" {
		return nil, invalid(DescMalformed, nil)
	}
	sum := tokenSum(token)
	now := v.now()
	if v.cache != nil {
		if p, ok := v.cache.Get(sum); ok {
			if !v.fresh(p, now) {
				v.cache.Remove(sum)
			} else if slices.Contains(providers, p.Provider) {
				v.metrics.CacheHit(cacheName)
				return p, nil
			}
		}
		v.metrics.CacheMiss(cacheName)
	}
	u, err := jose.Parse(token, v.maxBytes)
	if err != nil {
		if v.introspects(providers) {
			return v.introspect(ctx, token, sum, providers, now)
		}
		return nil, joseError(err)
	}
	// Provider selection by the untrusted iss; it is checked again on the verified claims.
	var candidates []*provider
	for _, name := range providers {
		if p := v.providers[name]; p != nil && p.intro == nil && p.cfg.Issuer == u.Issuer() && !slices.Contains(candidates, p) {
			candidates = append(candidates, p)
		}
	}
	if len(candidates) == 0 {
		if v.introspects(providers) {
			// Not a JWT of the route's JWT providers: it may be a JWT-shaped token that
			// only its issuer's introspection endpoint can judge.
			return v.introspect(ctx, token, sum, providers, now)
		}
		return nil, invalid(DescIssuer, nil)
	}
	var first *Error
	for _, p := range candidates {
		c, e := v.verifyWith(ctx, p, u, now)
		if e == nil {
			e := v.principal(p, c, sum)
			if v.cache != nil {
				v.cache.Add(e)
			}
			return &e.Principal, nil
		}
		if first == nil {
			first = e
		}
	}
	return nil, first
}

// fresh reports whether a cached Principal may still be served at now: before its exp plus
// its provider's skew, the bound checkClaims applied when it was verified.
func (v *Verifier) fresh(p *Principal, now time.Time) bool {
	prov := v.providers[p.Provider]
	return prov != nil && now.Before(p.Expiry.Add(prov.cfg.ClockSkew))
}

// verifyWith verifies u with one provider's settings and keys.
func (v *Verifier) verifyWith(ctx context.Context, p *provider, u *jose.Unverified, now time.Time) (*jose.Claims, *Error) {
	if !slices.Contains(p.algs, u.Algorithm()) {
		return nil, invalid(DescAlgorithm, jose.ErrUnsupportedAlg)
	}
	if p.cfg.RequireTyp != "" && !typMatches(u.Type(), p.cfg.RequireTyp) {
		return nil, invalid(DescType, nil)
	}
	ks := p.src.Lookup(ctx, u.KeyID())
	if ks == nil {
		return nil, &Error{Kind: KindUnavailable, Description: DescUnavailable, Err: ctx.Err()}
	}
	v.signatureChecks.Add(1)
	c, err := u.Verify(ks, p.algs)
	if err != nil {
		return nil, joseError(err)
	}
	if e := checkClaims(p, c, now); e != nil {
		return nil, e
	}
	return c, nil
}

// typMatches compares a header typ with the required one as RFC 7515 §4.1.9 says: media
// types are case-insensitive and "application/" may be omitted (RFC 9068 §2.1 "at+jwt").
func typMatches(got, want string) bool {
	norm := func(s string) string {
		s = strings.ToLower(s)
		return strings.TrimPrefix(s, "application/")
	}
	return got != "" && norm(got) == norm(want)
}

// checkClaims applies the time, issuer and audience rules to verified claims.
func checkClaims(p *provider, c *jose.Claims, now time.Time) *Error {
	skew := p.cfg.ClockSkew
	// RFC 7519 §4.1.4, stricter than jwx (which treats 0 as absent): exp is required and must
	// be a positive time not yet past (within the skew).
	if !c.HasExpiry {
		return invalid(DescNoExpiry, nil)
	}
	if c.Expiry.Unix() <= 0 || !now.Before(c.Expiry.Add(skew)) {
		return invalid(DescExpired, nil)
	}
	if c.HasNotBefore && c.NotBefore.After(now.Add(skew)) { // RFC 7519 §4.1.5
		return invalid(DescNotYetValid, nil)
	}
	if c.HasIssuedAt && c.IssuedAt.After(now.Add(skew)) {
		return invalid(DescIssuedFuture, nil)
	}
	// A long-lived token (or one whose iat is far in the past, e.g. negative) is refused, as
	// Envoy's jwt_authn max_lifetime does.
	start := now
	if c.HasIssuedAt {
		start = c.IssuedAt
	}
	if c.Expiry.Sub(start) > p.cfg.MaxTokenLifetime {
		return invalid(DescLifetime, nil)
	}
	if c.Issuer != p.cfg.Issuer { // RFC 7519 §4.1.1, exact
		return invalid(DescIssuer, nil)
	}
	if !slices.ContainsFunc(c.Audience, func(a string) bool { return p.audiences[a] }) {
		// RFC 7519 §4.1.3; a missing, [] or "" aud never matches (CVE-2020-26160), and a
		// provider without audiences accepts none (RFC 8725 §3.9: fail closed).
		return invalid(DescAudience, nil)
	}
	return nil
}

// principal builds the Principal of verified claims c, in the cache entry that may hold it for
// the token's lifetime. It keeps no reference to the token's decoded payload (which the claims'
// strings share) unless every claim is kept: the log hash, subject, client id and jti are
// copied into one string, the scopes come from the Verifier's scope sets, and the kept claims
// are deep-copied.
func (v *Verifier) principal(p *provider, c *jose.Claims, sum [sha256.Size]byte) *cacheEntry {
	clientID := ""
	if s, ok := c.Raw["client_id"].(string); ok && s != "" { // RFC 9068 §2.2
		clientID = s
	} else if s, ok := c.Raw["azp"].(string); ok {
		clientID = s
	}
	var hash [16]byte
	hex.Encode(hash[:], sum[:8])
	var b strings.Builder
	b.Grow(len(hash) + len(c.Subject) + len(clientID) + len(c.ID))
	b.Write(hash[:])
	b.WriteString(c.Subject)
	b.WriteString(clientID)
	b.WriteString(c.ID)
	blob, off := b.String(), 0
	next := func(l int) string {
		s := blob[off : off+l]
		off += l
		return s
	}
	e := &cacheEntry{Principal: Principal{
		Provider: p.cfg.Name,
		Issuer:   p.cfg.Issuer, // equal to c.Issuer (checkClaims)
		Expiry:   c.Expiry,
		TokenSum: sum,
	}}
	pr := &e.Principal
	pr.setScopes(v.scopes.get(ClaimScopes(c.Raw)))
	// In the order they were written to blob.
	pr.TokenHash = next(len(hash))
	pr.Subject = next(len(c.Subject))
	pr.ClientID = next(len(clientID))
	pr.ID = next(len(c.ID))
	if c.HasIssuedAt {
		pr.IssuedAt = c.IssuedAt
	}
	if cnf, ok := c.Raw["cnf"]; ok {
		pr.Cnf = confirmation(cnf)
	}
	pr.Claims = v.keptClaims(c.Raw)
	return e
}

// keptClaims is what a Principal keeps of a token's claims (JWT payload or introspection
// answer): all of them without Options.KeepClaims, else a copy of those it names (nil when the
// token has none), so a cache entry never holds the whole payload.
func (v *Verifier) keptClaims(raw map[string]any) map[string]any {
	if v.keep == nil {
		return raw
	}
	var out map[string]any
	for _, name := range v.keep {
		if val, ok := raw[name]; ok {
			if out == nil {
				out = make(map[string]any, len(v.keep))
			}
			out[name] = cloneJSON(val)
		}
	}
	return out
}

// confirmation reads a cnf claim (copied: the cache entry must not keep the token's payload).
func confirmation(cnf any) *Confirmation {
	m, _ := cnf.(map[string]any)
	jkt, _ := m["jkt"].(string)
	x5t, _ := m["x5t#S256"].(string)
	return &Confirmation{JKT: strings.Clone(jkt), X5T: strings.Clone(x5t)}
}

// maxScopeSets bounds scopeSets: beyond it a Principal's scopes are its own copy.
const maxScopeSets = 1024

// scopeSets hands out one shared, read-only scopeSet per distinct list of scopes. Tokens repeat
// a few scope lists ("read", "read write"), so a cached Principal need not carry its own copy
// (issue 11). Only verified tokens' scopes are added, and at most maxScopeSets of them.
type scopeSets struct {
	mu   sync.RWMutex
	sets map[string]*scopeSet // by the scopes joined with spaces (no scope holds one)
}

// scopeSet is one list of scopes and the list joined with spaces.
type scopeSet struct {
	list   []string
	joined string
}

// setScopes sets Scopes from a shared set (nil: none).
func (p *Principal) setScopes(set *scopeSet) {
	if set != nil {
		p.Scopes, p.scopes = set.list, set
	}
}

// get returns the shared scopeSet of scopes, nil for none.
func (s *scopeSets) get(scopes []string) *scopeSet {
	if len(scopes) == 0 {
		return nil
	}
	var kb [128]byte
	key := kb[:0]
	for i, sc := range scopes {
		if i > 0 {
			key = append(key, ' ')
		}
		key = append(key, sc...)
	}
	s.mu.RLock()
	shared, ok := s.sets[string(key)]
	s.mu.RUnlock()
	if ok {
		return shared
	}
	own := &scopeSet{list: make([]string, len(scopes)), joined: string(key)}
	for i, sc := range scopes {
		own.list[i] = strings.Clone(sc)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if shared, ok := s.sets[own.joined]; ok {
		return shared
	}
	if s.sets == nil {
		s.sets = make(map[string]*scopeSet)
	}
	if len(s.sets) < maxScopeSets {
		s.sets[own.joined] = own
	}
	return own
}

// cloneJSON deep-copies a decoded JSON value, so that it no longer shares the payload's memory.
func cloneJSON(v any) any {
	switch x := v.(type) {
	case string:
		return strings.Clone(x)
	case json.Number:
		return json.Number(strings.Clone(string(x)))
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneJSON(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[strings.Clone(k)] = cloneJSON(e)
		}
		return out
	}
	return v // bool, nil
}

// sumBuffers hold a copy of the token for hashing: sha256.Sum256([]byte(token)) allocates a
// copy of the token on every Check, since the conversion escapes into the hash.
var sumBuffers = sync.Pool{New: func() any { return new([]byte) }}

// tokenSum returns the SHA-256 of token without allocating.
func tokenSum(token string) [sha256.Size]byte {
	buf := sumBuffers.Get().(*[]byte)
	*buf = append((*buf)[:0], token...)
	sum := sha256.Sum256(*buf)
	sumBuffers.Put(buf)
	return sum
}

// ClaimScopes reads the caller's scopes from verified claims (or an introspection answer,
// RFC 7662 §2.2) as docs/decisions.md#the-allowed-response says: the `scope` claim (RFC 8693 §4.2,
// RFC 9068 §2.2.3) when present, else `scp` (Okta sends an array, Entra ID a string). The first of
// the two that is present decides: a malformed `scope` yields no scopes rather than falling back to
// `scp`, so that required scopes fail closed.
func ClaimScopes(raw map[string]any) []string {
	v, ok := raw["scope"]
	if !ok {
		v = raw["scp"]
	}
	s, _ := scopes(v)
	return s
}

// scopes reads a scope claim: a string or an array of strings. Anything else yields no scopes
// (ok=false), so that required scopes fail closed.
//
// A string is split on the space character only (RFC 6749 §3.3: scope-tokens are separated by
// %x20), never on other whitespace: "x\u00a0admin" and "x\tadmin" are one scope each, not
// `admin`. Empty strings between repeated spaces are not scopes.
//
// An array element is one scope-token as it stands and is not split further. An element that is
// empty or holds a space is not a scope-token at all (RFC 6749 §3.3 scope-token = 1*NQCHAR):
// the whole claim is then malformed and yields no scopes, since reading "read admin" as one
// scope would still turn into two once the scopes are joined with spaces for metadata or a
// forwarded header.
func scopes(v any) ([]string, bool) {
	switch s := v.(type) {
	case string:
		out := make([]string, 0, strings.Count(s, " ")+1)
		for tok := range strings.SplitSeq(s, " ") {
			if tok != "" {
				out = append(out, tok)
			}
		}
		return out, true
	case []any:
		out := make([]string, 0, len(s))
		for _, e := range s {
			str, ok := e.(string)
			if !ok || str == "" || strings.Contains(str, " ") {
				return nil, false
			}
			out = append(out, str)
		}
		return out, true
	}
	return nil, false
}
