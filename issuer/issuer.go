// Package issuer makes tokengate an OAuth 2.0 authorization server for the client-credentials
// grant (RFC 6749 §4.4): a token endpoint, a JWKS, token introspection (RFC 7662) and
// authorization-server metadata (RFC 8414), issuing JWT access tokens in the RFC 9068 profile.
// It also signs the tokens of `mint` routes (Mint), with the same keys and the same `iss`.
//
// Every signing and verification goes through internal/jose; this package never touches a JOSE
// library directly. An *Issuer is immutable after New (the failure limiter it uses is shared and
// synchronises itself), and is safe for concurrent use.
package issuer

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tokengate/tokengate/internal/authlimit"
	"github.com/tokengate/tokengate/internal/defaults"
	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/jwks"
	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/replay"
)

// MaxBodyBytes caps the request body of the token and introspection endpoints; a larger body is
// answered 413 before it is parsed (RFC 6749 §3.2 leaves the size to the server).
const MaxBodyBytes = 64 << 10

// minCompares is the number of digest comparisons every authentication performs at least, so a
// client with one secret, a client with two (rotation) and an unknown client do the same work.
const minCompares = 2

// The claims the issuer sets itself are jose.ReservedClaims (RFC 7519 §4.1, RFC 9068 §2.2), the
// same list internal/config refuses in a client's `claims`. Static claims of a client may not use
// these names; extra claims given to Mint never replace them. (An introspection answer sets
// "active" after copying the claims, so a claim of that name cannot fake it either.)

// KeyConfig is one signing key. PEM holds the key file's bytes: PEM (PKCS#8, PKCS#1, SEC1) or a
// private JWK. Generate makes an ephemeral key instead (development only: its tokens stop
// verifying when the process restarts, so New logs a warning).
type KeyConfig struct {
	Kid, Alg string
	PEM      []byte
	Generate bool
}

// Client is one registered OAuth client.
type Client struct {
	ID string
	// SecretHashes are the SHA-256 digests of the accepted secrets; several during a rotation. Secrets
	// themselves are never kept (docs/security.md#deliberate-choices: a fast hash, because secrets are
	// ≥128-bit random values and bcrypt would be a CPU DoS at token-endpoint rates).
	SecretHashes [][32]byte
	// Scopes the client may ask for; DefaultScopes are granted when it names none (a subset of
	// Scopes). Audiences it may ask for (RFC 8707); the first is the default, at least one is
	// required because RFC 9068 §2.2 makes `aud` mandatory.
	Scopes, DefaultScopes, Audiences []string
	// TokenTTL overrides Config.TokenTTL when positive.
	TokenTTL time.Duration
	// SigningKey names (by kid) the configured key that signs this client's tokens, as Otoroshi's
	// per-apikey `jwt-sign-keypair`; empty means the active (first) key.
	SigningKey string
	// Claims are static claims added to every token of this client. Their names may not be
	// registered claims (New refuses them) and their values must be JSON.
	Claims map[string]any
	// Introspect lets this client introspect every token of the issuer (a resource server);
	// without it, introspection answers active only for the client's own tokens (RFC 7662 §4:
	// the server must not tell one client about another's tokens).
	Introspect bool
	// TokenExchange allows the RFC 8693 grant (grant_types: token_exchange); every client may
	// use client_credentials.
	TokenExchange bool
	// Keys, when set, authenticate the client by private_key_jwt (RFC 7523 §2.2) instead of a
	// secret: its assertions must be signed by one of these keys (an inline `jwks` or a fetched
	// `jwks_uri`). A client has either SecretHashes or Keys, never both.
	Keys jwks.Source
}

// Config is the issuer's configuration (`issuer`, docs/configuration.md#issuer-optional).
type Config struct {
	// IssuerURL is the `iss` of every token and the base of the endpoints in the metadata.
	IssuerURL string
	// TokenTTL is the default access-token lifetime (defaults.IssuerTokenTTL when zero).
	TokenTTL time.Duration
	// Keys are the signing keys: the first signs, every one is published in the JWKS.
	Keys    []KeyConfig
	Clients []Client
	// SubjectProviders are the providers whose tokens the token-exchange grant accepts as
	// subject_token (RFC 8693 §2.1); empty disables the grant. They are verified by
	// Options.Subjects.
	SubjectProviders []string
}

// Options are the runtime dependencies of an Issuer. Zero values pick the defaults.
type Options struct {
	Logger  *slog.Logger
	Metrics *metrics.Metrics
	Now     func() time.Time

	// Limiter is the failure limiter (RFC 6749 §2.3.1; docs/issuer.md#failure-limiter), shared with
	// the authorizer's client_credentials routes and created once per process, so that a reload keeps
	// a guesser's penalty. Nil: the issuer makes its own with the defaults (never "unlimited").
	Limiter *authlimit.Limiter
	// TrustedProxies are server.trusted_proxies: when the socket peer is one of them, the
	// caller IP the limiter counts is taken from X-Forwarded-For (authlimit.ClientIP).
	TrustedProxies []netip.Prefix
	// Previous is the issuer this one replaces on a configuration reload: its generated
	// (ephemeral) keys whose kid and alg are unchanged are kept, so a reload does not invalidate
	// every token they signed.
	Previous *Issuer
	// Subjects verifies subject tokens of the token-exchange grant against
	// Config.SubjectProviders (the authorizer's verifier). Required when SubjectProviders is set.
	Subjects SubjectVerifier
	// Replay remembers the jtis of accepted client assertions (RFC 7523 §3 item 7): created once
	// per process and shared with the fleet through Redis when configured, so that an assertion
	// is accepted once by the fleet, across reloads. Nil: Previous's, else the issuer's own.
	Replay *replay.Cache
}

// client is the validated, frozen form of a Client.
type client struct {
	id            string
	hashes        [][32]byte
	scopes        []string
	defaultScopes []string
	audiences     []string
	ttl           time.Duration
	key           *jose.SigningKey
	claims        map[string]any // frozen JSON copy; never mutated after New
	introspect    bool
	exchange      bool        // may use the RFC 8693 grant
	keys          jwks.Source // private_key_jwt keys; nil for a secret client
}

// Issuer is the authorization server. Build it with New.
type Issuer struct {
	issuerURL string
	base      string // issuerURL without a trailing slash, for endpoint URLs
	ttl       time.Duration
	keys      []*jose.SigningKey
	ephemeral []*jose.SigningKey // the generated ones among keys (kept across reloads)
	kids      []string
	jwks      []byte
	keySet    *jose.KeySet
	algs      []string
	clients   map[string]*client
	audiences []string
	scopes    []string
	metadata  []byte

	log     *slog.Logger
	metrics *metrics.Metrics
	now     func() time.Time

	dummy   [32]byte                    // digest compared for an unknown client
	compare func(a, b []byte) int       // subtle.ConstantTimeCompare; a field so a test can count calls
	limit   *authlimit.Limiter          // the shared failure limiter (docs/issuer.md#failure-limiter)
	trusted []netip.Prefix              // server.trusted_proxies
	random  func(b []byte) (int, error) // crypto/rand.Read

	subjectProviders []string        // token exchange: providers of subject tokens
	subjects         SubjectVerifier // nil when token exchange is not configured
	replay           *replay.Cache
}

// New validates cfg, loads or generates the signing keys and builds the issuer.
func New(cfg Config, opts Options) (*Issuer, error) {
	i := &Issuer{
		issuerURL: cfg.IssuerURL,
		base:      strings.TrimRight(cfg.IssuerURL, "/"),
		ttl:       cfg.TokenTTL,
		clients:   make(map[string]*client, len(cfg.Clients)),
		log:       opts.Logger,
		metrics:   opts.Metrics,
		now:       opts.Now,
		compare:   subtle.ConstantTimeCompare,
		limit:     opts.Limiter,
		trusted:   slices.Clone(opts.TrustedProxies),
		random:    rand.Read,
	}
	if i.log == nil {
		i.log = slog.New(slog.DiscardHandler)
	}
	if i.now == nil {
		i.now = time.Now
	}
	if i.limit == nil {
		i.limit = authlimit.New(authlimit.Options{Now: i.now})
	}
	if err := validateIssuerURL(cfg.IssuerURL); err != nil {
		return nil, err
	}
	if len(cfg.SubjectProviders) > 0 {
		if opts.Subjects == nil {
			return nil, errors.New("issuer: token_exchange: subject_providers set but no subject verifier")
		}
		i.subjectProviders = dedupe(cfg.SubjectProviders)
		i.subjects = opts.Subjects
	}
	// The jti replay cache outlives a reload, so a reload never lets an assertion be replayed
	// (RFC 7523 §3 item 7).
	switch {
	case opts.Replay != nil:
		i.replay = opts.Replay
	case opts.Previous != nil:
		i.replay = opts.Previous.replay
	default:
		i.replay = replay.New(0)
	}
	switch {
	case i.ttl == 0:
		i.ttl = defaults.IssuerTokenTTL
	case i.ttl < time.Second:
		return nil, fmt.Errorf("issuer: token_ttl %s: must be at least 1s", cfg.TokenTTL)
	}
	if err := i.loadKeys(cfg.Keys, opts.Previous); err != nil {
		return nil, err
	}
	for n, c := range cfg.Clients {
		if err := i.addClient(n, c); err != nil {
			return nil, err
		}
	}
	i.audiences = i.union(func(c *client) []string { return c.audiences })
	i.scopes = i.union(func(c *client) []string { return c.scopes })
	meta, err := i.buildMetadata()
	if err != nil {
		return nil, err
	}
	i.metadata = meta
	if _, err := i.random(i.dummy[:]); err != nil {
		return nil, fmt.Errorf("issuer: random: %w", err)
	}
	return i, nil
}

// generated returns i's generated key named kid for alg, or nil (also for a nil i).
func (i *Issuer) generated(kid, alg string) *jose.SigningKey {
	if i == nil {
		return nil
	}
	for _, k := range i.ephemeral {
		if k.KeyID() == kid && k.Algorithm() == alg {
			return k
		}
	}
	return nil
}

// validateIssuerURL applies RFC 8414 §2: an absolute URL with no query or fragment. Plain http is
// accepted (demo and loopback set-ups); config validation decides whether it is allowed.
func validateIssuerURL(s string) error {
	if s == "" {
		return errors.New("issuer: issuer_url: required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("issuer: issuer_url: not a URL: %w", err)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return errors.New("issuer: issuer_url: scheme must be https (or http)")
	case u.Host == "":
		return errors.New("issuer: issuer_url: host required")
	case u.User != nil:
		return errors.New("issuer: issuer_url: must not contain user information")
	case u.RawQuery != "" || u.ForceQuery:
		return errors.New("issuer: issuer_url: must not contain a query (RFC 8414 §2)")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return errors.New("issuer: issuer_url: must not contain a fragment (RFC 8414 §2)")
	}
	return nil
}

func (i *Issuer) loadKeys(cfgs []KeyConfig, prev *Issuer) error {
	if len(cfgs) == 0 {
		return errors.New("issuer: signing_keys: at least one key required")
	}
	for n, kc := range cfgs {
		var (
			k   *jose.SigningKey
			err error
		)
		switch {
		case kc.Generate && len(kc.PEM) > 0:
			return fmt.Errorf("issuer: signing_keys[%d]: generate and a key file are exclusive", n)
		case kc.Generate && prev.generated(kc.Kid, kc.Alg) != nil:
			k = prev.generated(kc.Kid, kc.Alg)
		case kc.Generate:
			k, err = jose.GenerateKey(kc.Alg, kc.Kid)
			if err == nil {
				i.log.Warn("issuer: EPHEMERAL SIGNING KEY generated at start-up (generate: true); "+
					"tokens it signs stop verifying when tokengate restarts and replicas do not share it; "+
					"for development only, use a key file in production",
					"kid", k.KeyID(), "alg", k.Algorithm())
			}
		default:
			k, err = jose.LoadSigningKey(kc.PEM, kc.Alg, kc.Kid)
		}
		if err != nil {
			return fmt.Errorf("issuer: signing_keys[%d]: %w", n, err)
		}
		if slices.Contains(i.kids, k.KeyID()) {
			return fmt.Errorf("issuer: signing_keys[%d]: duplicate kid %q", n, k.KeyID())
		}
		i.keys = append(i.keys, k)
		if kc.Generate {
			i.ephemeral = append(i.ephemeral, k)
		}
		i.kids = append(i.kids, k.KeyID())
		if !slices.Contains(i.algs, k.Algorithm()) {
			i.algs = append(i.algs, k.Algorithm())
		}
	}
	jwks, err := jose.PublicJWKS(i.keys)
	if err != nil {
		return fmt.Errorf("issuer: publishing keys: %w", err)
	}
	i.jwks = jwks
	// Introspection verifies against exactly what is published, so "signed by a published key"
	// means the same thing to us as to any resource server reading /.well-known/jwks.json.
	ks, dropped, err := jose.ParseKeySet(jwks)
	if err != nil {
		return fmt.Errorf("issuer: reading back published keys: %w", err)
	}
	if len(dropped) > 0 || ks.Len() != len(i.keys) {
		return fmt.Errorf("issuer: published key set dropped keys: %s", strings.Join(dropped, "; "))
	}
	i.keySet = ks
	return nil
}

func (i *Issuer) addClient(n int, c Client) error {
	where := fmt.Sprintf("issuer: clients[%d]", n)
	if c.ID == "" {
		return fmt.Errorf("%s: client_id required", where)
	}
	if !utf8.ValidString(c.ID) || strings.ContainsFunc(c.ID, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("%s: client_id must be UTF-8 without control characters", where)
	}
	where = fmt.Sprintf("issuer: client %q", c.ID)
	if _, dup := i.clients[c.ID]; dup {
		return fmt.Errorf("%s: duplicate client_id", where)
	}
	switch {
	case len(c.SecretHashes) == 0 && c.Keys == nil:
		return fmt.Errorf("%s: at least one secret (or a key set for private_key_jwt) required", where)
	case len(c.SecretHashes) > 0 && c.Keys != nil:
		return fmt.Errorf("%s: a secret and a key set are exclusive (one authentication method per client)", where)
	}
	if len(c.Audiences) == 0 {
		return fmt.Errorf("%s: at least one audience required (RFC 9068 §2.2: aud is required)", where)
	}
	for _, a := range c.Audiences {
		if a == "" || !utf8.ValidString(a) {
			return fmt.Errorf("%s: audiences: empty or non-UTF-8 audience", where)
		}
	}
	for _, s := range c.Scopes {
		if !validScopeToken(s) {
			return fmt.Errorf("%s: scopes: %q is not a scope token (RFC 6749 §3.3)", where, s)
		}
	}
	for _, s := range c.DefaultScopes {
		if !slices.Contains(c.Scopes, s) {
			return fmt.Errorf("%s: default_scopes: %q is not one of its scopes", where, s)
		}
	}
	if c.TokenTTL < 0 || (c.TokenTTL > 0 && c.TokenTTL < time.Second) {
		return fmt.Errorf("%s: token_ttl %s: must be at least 1s", where, c.TokenTTL)
	}
	cl := &client{
		id:            c.ID,
		hashes:        slices.Clone(c.SecretHashes),
		scopes:        dedupe(c.Scopes),
		defaultScopes: dedupe(c.DefaultScopes),
		audiences:     dedupe(c.Audiences),
		ttl:           c.TokenTTL,
		key:           i.keys[0],
		introspect:    c.Introspect,
		exchange:      c.TokenExchange,
		keys:          c.Keys,
	}
	if cl.ttl == 0 {
		cl.ttl = i.ttl
	}
	if c.SigningKey != "" {
		idx := slices.Index(i.kids, c.SigningKey)
		if idx < 0 {
			return fmt.Errorf("%s: signing_key %q is not a configured kid", where, c.SigningKey)
		}
		cl.key = i.keys[idx]
	}
	for name := range c.Claims {
		if jose.IsReservedClaim(name) || isDelegationClaim(name) {
			return fmt.Errorf("%s: claims: %q is set by the issuer and cannot be overridden", where, name)
		}
	}
	claims, err := freezeClaims(c.Claims)
	if err != nil {
		return fmt.Errorf("%s: claims: %w", where, err)
	}
	cl.claims = claims
	i.clients[c.ID] = cl
	return nil
}

// union collects, sorted and without repeats, a list over every client.
func (i *Issuer) union(f func(*client) []string) []string {
	var out []string
	for _, c := range i.clients {
		out = append(out, f(c)...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func dedupe(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// IssuerURL is the `iss` of every token this issuer signs.
func (i *Issuer) IssuerURL() string { return i.issuerURL }

// PublicJWKS is the published key set ({"keys":[…]}, public parts only), for the `issuer: self`
// provider, which verifies in process without an HTTP round trip.
func (i *Issuer) PublicJWKS() []byte { return bytes.Clone(i.jwks) }

// Audiences is the union of every audience a client may ask for, sorted.
func (i *Issuer) Audiences() []string { return slices.Clone(i.audiences) }

// Register mounts the issuer's endpoints (docs/issuer.md#endpoints) on mux. The token and
// introspection paths are registered for every method so that a wrong method is answered by us (405
// with `Allow` and the no-store headers) rather than by the mux.
func (i *Issuer) Register(mux *http.ServeMux) {
	mux.HandleFunc(PathToken, i.serveToken)
	mux.HandleFunc(PathIntrospect, i.serveIntrospect)
	mux.HandleFunc(PathJWKS, i.serveJWKS)
	mux.HandleFunc(PathMetadata, i.serveMetadata)
	mux.HandleFunc(PathOpenIDConfiguration, i.serveMetadata)
}

// Handler is a mux with only the issuer's endpoints (tests, benchmarks, embedding).
func (i *Issuer) Handler() http.Handler {
	mux := http.NewServeMux()
	i.Register(mux)
	return mux
}

// Paths of the issuer's endpoints (docs/issuer.md#endpoints).
const (
	PathToken               = "/oauth2/token"
	PathIntrospect          = "/oauth2/introspect"
	PathJWKS                = "/.well-known/jwks.json"
	PathMetadata            = "/.well-known/oauth-authorization-server"
	PathOpenIDConfiguration = "/.well-known/openid-configuration"
)
