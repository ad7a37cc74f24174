// Package config loads, checks and describes tokengate's configuration file (SPEC section 3).
//
// Load and Parse turn a YAML file into a *Config in fixed steps:
//
//  1. the YAML is parsed into a node tree (go.yaml.in/yaml/v3, the YAML 1.2 parser, so that
//     every key keeps its line and column, numbers written in string fields keep their text,
//     and anchors, aliases and merge keys (<<) work as YAML defines them). As in YAML 1.2, yes,
//     no, on and off are strings, not booleans;
//  2. the tree is walked against the Go types of this package: every key that names no field is
//     reported as "unknown field" with its full path, every value of the wrong shape is reported,
//     and ${NAME} references inside string values are expanded (after parsing, so an environment
//     value is inserted as text and can never add YAML structure; it is not expanded again).
//     "$${" writes a literal "${"; any other "$" is kept. A variable that is not set is a problem
//     naming the field. A quoted "${NAME}" may also give a boolean or integer field its value
//     (`db: "${REDIS_DB}"`);
//  3. the checked tree is decoded through the json tags of the types below (the tags are the YAML
//     keys, as with sigs.k8s.io/yaml);
//  4. defaults are applied to absent keys (each is documented on its field and in defaults.go);
//  5. *_file secrets and keys are read, relative to the configuration file's directory when not
//     absolute, with one trailing newline stripped from secrets;
//  6. the whole configuration is validated.
//
// Every problem found by any step is reported at once in a *Errors, one "path: message" line per
// problem in document order, with paths such as routes[2].upstream.fetch.token_url. No message
// ever contains a secret: secret values, URLs and file contents are never quoted.
package config

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"
)

// Config is one complete, validated configuration. Values returned by Load and Parse have every
// default applied and every *_file secret resolved; callers treat them as read-only.
type Config struct {
	// Server holds the listeners and request limits.
	Server Server `json:"server"`
	// Issuer, when present, makes tokengate an OAuth2 client-credentials authorization server
	// (SPEC section 6) and enables `mint` routes and `issuer: self` providers.
	Issuer *Issuer `json:"issuer,omitempty"`
	// Providers are the issuers whose JWTs callers may present.
	Providers []Provider `json:"providers,omitempty"`
	// Routes are tried in file order when Envoy names no route (SPEC section 4).
	Routes []Route `json:"routes,omitempty"`
	// Cache sizes the in-process caches and optionally shares upstream tokens through Redis.
	Cache Cache `json:"cache"`

	// Warnings are filled by Load/Parse: things that are allowed but probably wrong (a route an
	// earlier route shadows, a short client secret). `validate` prints them and still exits 0;
	// `serve` logs them.
	Warnings []Problem `json:"-"`
}

// Server holds the listeners and request limits.
type Server struct {
	// GRPCAddr serves ext_authz gRPC, grpc.health.v1 and reflection. Default ":9001".
	GRPCAddr string `json:"grpc_addr,omitempty"`
	// HTTPAddr serves the issuer endpoints, forward-auth, /metrics, /healthz and /readyz.
	// Default ":8080".
	HTTPAddr string `json:"http_addr,omitempty"`
	// MaxTokenBytes bounds the Authorization header; longer ones are rejected before any parsing.
	// Default 8192; allowed range 1024..65536.
	MaxTokenBytes int `json:"max_token_bytes,omitempty"`
	// AllowHTTPURLs permits http:// JWKS, discovery, token and issuer URLs for hosts that are not
	// loopback. Default false: plain HTTP only for 127.0.0.0/8, ::1 and localhost.
	AllowHTTPURLs bool `json:"allow_http_urls,omitempty"`
	// AuthzAddr, when set, serves forward-auth /authz on its own listener (and not on HTTPAddr),
	// so that only gateways need reach it (SPEC section 5, "Who may call").
	AuthzAddr string `json:"authz_addr,omitempty"`
	// MetricsAddr, when set, serves /metrics on its own listener and not on HTTPAddr.
	MetricsAddr string `json:"metrics_addr,omitempty"`
	// GatewayTLS, when set, serves GRPCAddr and AuthzAddr over TLS, and with ClientCAFile only to
	// gateways presenting a certificate that CA signed (mTLS).
	GatewayTLS *GatewayTLS `json:"gateway_tls,omitempty"`
	// ForwardAuthHeaders says which headers forward-auth reads the original request from:
	// auto (default), x-forwarded, x-original or request (SPEC section 5).
	ForwardAuthHeaders string `json:"forward_auth_headers,omitempty"`
	// ClientCertHeader is, for forward-auth, the header holding the caller's URL-encoded PEM
	// client certificate (RFC 8705). Empty: none.
	ClientCertHeader string `json:"client_cert_header,omitempty"`
	// TrustedProxies are the CIDRs (or single addresses) whose X-Forwarded-For names the client
	// for the failure limiter (SPEC section 6). Empty: the socket peer is the client.
	TrustedProxies []string `json:"trusted_proxies,omitempty"`

	// TrustedProxyPrefixes is filled by Load/Parse: TrustedProxies parsed.
	TrustedProxyPrefixes []netip.Prefix `json:"-"`
}

// Forward-auth header families (Server.ForwardAuthHeaders).
const (
	ForwardAuthAuto       = "auto"
	ForwardAuthXForwarded = "x-forwarded"
	ForwardAuthXOriginal  = "x-original"
	ForwardAuthRequest    = "request"
)

// GatewayTLS is TLS on the gateway-facing listeners (gRPC and authz_addr).
type GatewayTLS struct {
	// CertFile and KeyFile are the server's PEM certificate chain and private key. Required.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// ClientCAFile, when set, holds the PEM CA certificates that sign gateways' client
	// certificates; a gateway without such a certificate fails the handshake.
	ClientCAFile string `json:"client_ca_file,omitempty"`
	// ClientSANs, when set, requires the gateway certificate to carry one of these DNS or URI
	// SANs (e.g. spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway).
	ClientSANs []string `json:"client_sans,omitempty"`

	// Filled by Load/Parse: CertFile, KeyFile and ClientCAFile resolved against the configuration
	// file's directory (the files are re-read by the server, so only their paths are kept).
	CertPath, KeyPath, ClientCAPath string `json:"-"`
}

// Issuer configures tokengate's own OAuth2 client-credentials server.
type Issuer struct {
	// IssuerURL is the `iss` of every minted token and the RFC 8414 metadata `issuer`: an
	// absolute http(s) URL without query or fragment (RFC 8414 section 2). Required.
	IssuerURL string `json:"issuer_url,omitempty"`
	// TokenTTL is the lifetime of issued tokens unless a client overrides it. Default 1h.
	TokenTTL Duration `json:"token_ttl,omitempty"`
	// SigningKeys: the first is the active key; the others stay published in the JWKS so tokens
	// they signed keep verifying during a rotation. At least one is required.
	SigningKeys []SigningKey `json:"signing_keys,omitempty"`
	// Clients are the registered OAuth2 clients.
	Clients []Client `json:"clients,omitempty"`
}

// SigningKey is one private key of the issuer.
type SigningKey struct {
	// Kid is published as the JWK `kid` and set in every token header. Required, unique,
	// printable ASCII, at most 256 bytes.
	Kid string `json:"kid,omitempty"`
	// Alg is one of ES256, ES384, RS256, RS384, RS512, PS256, EdDSA. Required.
	Alg string `json:"alg,omitempty"`
	// File is a PEM (PKCS#8, PKCS#1, SEC1) or private JWK file. Exactly one of File and Generate.
	File string `json:"file,omitempty"`
	// Generate creates an ephemeral key at start-up, for development only.
	Generate bool `json:"generate,omitempty"`

	// KeyData is the content of File, read by Load/Parse. It is only checked to look like a PEM
	// private key or a JSON object; the issuer parses it (internal/jose).
	KeyData []byte `json:"-"`
}

// Client is one OAuth2 client of the issuer. It has exactly one secret source among
// ClientSecretHash, ClientSecretHashes, ClientSecret and ClientSecretFile.
type Client struct {
	// ClientID is required and unique.
	ClientID string `json:"client_id,omitempty"`
	// ClientSecretHash is "sha256:" followed by the 64 hex digits of SHA-256(secret), as printed by
	// `tokengate hash-secret`.
	ClientSecretHash string `json:"client_secret_hash,omitempty"`
	// ClientSecretHashes is an addition to SPEC section 3: several hashes in the format of
	// ClientSecretHash, each an accepted secret, so a secret can be rotated without downtime
	// (old and new valid together).
	ClientSecretHashes []string `json:"client_secret_hashes,omitempty"`
	// ClientSecret is the secret itself, usually "${VAR}".
	ClientSecret string `json:"client_secret,omitempty"`
	// ClientSecretFile holds the secret; one trailing newline is stripped.
	ClientSecretFile string `json:"client_secret_file,omitempty"`
	// Scopes this client may ask for (RFC 6749 section 3.3 scope tokens).
	Scopes []string `json:"scopes,omitempty"`
	// DefaultScopes are granted when the request names none; a subset of Scopes.
	DefaultScopes []string `json:"default_scopes,omitempty"`
	// Audiences it may ask for; the first is the default. At least one is required, since
	// RFC 9068 section 2.2 requires `aud` in every access token.
	Audiences []string `json:"audiences,omitempty"`
	// TokenTTL overrides issuer.token_ttl. Default: issuer.token_ttl.
	TokenTTL Duration `json:"token_ttl,omitempty"`
	// SigningKey names the kid of a configured signing key to sign this client's tokens with.
	// Default: the active (first) key.
	SigningKey string `json:"signing_key,omitempty"`
	// Claims are static claims added to the client's tokens. Registered claims the issuer sets
	// itself (iss, sub, aud, exp, nbf, iat, jti, client_id, scope) are refused. Numbers are
	// json.Number.
	Claims map[string]any `json:"claims,omitempty"`

	// Introspect lets this client introspect any token of the issuer (a resource server, RFC 7662
	// section 4); otherwise only tokens issued to itself.
	Introspect bool `json:"introspect,omitempty"`

	// SecretHashes is filled by Load/Parse: the SHA-256 of every accepted secret, whatever the
	// secret source (hashes are parsed, plain secrets and secret files are hashed), so the issuer
	// never needs the plain secret.
	SecretHashes [][32]byte `json:"-"`
}

// Provider is an issuer whose JWTs callers may present, or the built-in issuer (`issuer: self`).
type Provider struct {
	// Name is referenced by routes' authenticate.jwt.providers. Required, unique, [A-Za-z0-9._-].
	Name string `json:"name,omitempty"`
	// Issuer is the exact `iss` of its tokens, or "self" for tokengate's own issuer.
	Issuer string `json:"issuer,omitempty"`
	// JWKSURI is where its keys are published. Exactly one of JWKSURI and Discovery for an
	// external provider; neither for `issuer: self`.
	JWKSURI string `json:"jwks_uri,omitempty"`
	// Discovery reads the jwks_uri from Issuer + "/.well-known/openid-configuration".
	Discovery bool `json:"discovery,omitempty"`
	// Audiences: the token's aud must contain one. Required for an external provider; for
	// `issuer: self`, empty means any audience this issuer mints.
	Audiences []string `json:"audiences,omitempty"`
	// Algorithms is the allow-list of header `alg` values. Default RS256, ES256, PS256, EdDSA
	// for an external provider; for `issuer: self`, the algorithms of the issuer's signing keys.
	// Allowed: RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA (never none or HS*).
	Algorithms []string `json:"algorithms,omitempty"`
	// ClockSkew is tolerated on exp, nbf and iat. Default 30s (0s is allowed); at most 5m.
	ClockSkew Duration `json:"clock_skew,omitempty"`
	// RefreshInterval is the background JWKS refresh period; Cache-Control max-age is honoured
	// within bounds. Default 15m; at least 10s.
	RefreshInterval Duration `json:"refresh_interval,omitempty"`
	// RequireTyp, when set (e.g. "at+jwt", RFC 9068 section 4), must match the header typ,
	// compared case-insensitively with an optional "application/" prefix; a missing typ is
	// refused. Empty accepts any typ.
	RequireTyp string `json:"require_typ,omitempty"`
	// MaxTokenLifetime rejects tokens whose exp - iat (exp - now without iat) is larger.
	// Default 24h.
	MaxTokenLifetime Duration `json:"max_token_lifetime,omitempty"`
}

// ClientsSelf is the client_credentials.clients value that verifies callers against the built-in
// issuer's clients.
const ClientsSelf = "self"

// SelfIssuer is the Provider.Issuer value naming tokengate's built-in issuer.
const SelfIssuer = "self"

// IsSelf reports whether p is the built-in issuer, verified with its own keys and no HTTP.
func (p *Provider) IsSelf() bool { return p != nil && p.Issuer == SelfIssuer }

// Route is one entry of `routes` (SPEC sections 3 and 4).
type Route struct {
	// Name is the value Envoy sends in context_extensions["route"]. Required, unique,
	// [A-Za-z0-9._-]; also a metrics label.
	Name string `json:"name,omitempty"`
	// Match selects the route when Envoy names none; empty fields match anything.
	Match Match `json:"match"`
	// Authenticate takes exactly one of jwt, client_credentials and none.
	Authenticate Authenticate `json:"authenticate"`
	// Upstream takes exactly one of mint, fetch, exchanged, passthrough and remove.
	Upstream Upstream `json:"upstream"`
	// ForwardClaims maps a request header (lower-cased by Load) to the claim whose value it
	// carries upstream. Authorization, Host, pseudo-headers and framing or hop-by-hop headers
	// are refused.
	ForwardClaims map[string]string `json:"forward_claims,omitempty"`
}

// Match selects a route from the request (SPEC section 4).
type Match struct {
	// IgnoreCase compares PathPrefix in any letter case (for case-insensitive upstreams).
	IgnoreCase bool `json:"ignore_case,omitempty"`
	// Authority is an exact host or "*.domain" (any name ending in ".domain"), without port.
	// Lower-cased by Load.
	Authority string `json:"authority,omitempty"`
	// PathPrefix starts with "/".
	PathPrefix string `json:"path_prefix,omitempty"`
	// Methods are HTTP method tokens, upper-cased by Load.
	Methods []string `json:"methods,omitempty"`
}

// Authenticate says how callers prove who they are. Exactly one field is set.
type Authenticate struct {
	// JWT: a Bearer JWT verified against the named providers.
	JWT *JWTAuth `json:"jwt,omitempty"`
	// ClientCredentials: the caller's Basic client_id:secret, exchanged at an IdP (application
	// level).
	ClientCredentials *ClientCredentialsAuth `json:"client_credentials,omitempty"`
	// None: no authentication.
	None *Empty `json:"none,omitempty"`
}

// Authenticate modes, as returned by (*Authenticate).Mode.
const (
	AuthJWT               = "jwt"
	AuthClientCredentials = "client_credentials"
	AuthNone              = "none"
)

// Mode returns the configured mode (AuthJWT, AuthClientCredentials or AuthNone), or "" when none
// is set (impossible in a validated Config).
func (a *Authenticate) Mode() string {
	switch {
	case a == nil:
		return ""
	case a.JWT != nil:
		return AuthJWT
	case a.ClientCredentials != nil:
		return AuthClientCredentials
	case a.None != nil:
		return AuthNone
	}
	return ""
}

// JWTAuth requires a Bearer JWT.
type JWTAuth struct {
	// Providers lists the names of the providers whose tokens are accepted. At least one.
	Providers []string `json:"providers,omitempty"`
	// Scopes are all required.
	Scopes []string `json:"scopes,omitempty"`
	// Claims must each equal the token's claim of that name. Numbers are json.Number.
	Claims map[string]any `json:"claims,omitempty"`
}

// ClientCredentialsAuth exchanges the caller's Basic credentials for a token at an IdP
// (RFC 6749 section 4.4).
type ClientCredentialsAuth struct {
	// TokenURL is the IdP's token endpoint that verifies the caller's credentials (the
	// credentials are good when it issues a token for them). Exactly one of TokenURL and Clients.
	TokenURL string `json:"token_url,omitempty"`
	// Clients: "self" verifies the caller's credentials against issuer.clients (constant-time
	// secret hash comparison, no IdP call).
	Clients string `json:"clients,omitempty"`
	// Scopes asked for.
	Scopes []string `json:"scopes,omitempty"`
	// Audience, sent as the `audience` form field when set.
	Audience string `json:"audience,omitempty"`
	// EndpointParams are extra form fields. The names grant_type, client_id, client_secret,
	// scope and audience are reserved.
	EndpointParams map[string][]string `json:"endpoint_params,omitempty"`
	// AuthStyle is "basic" (Authorization header) or "body" (form fields). Default "basic".
	AuthStyle string `json:"auth_style,omitempty"`
	// Timeout bounds a Check's whole wait for the token. Default 2s; at most 1m.
	Timeout Duration `json:"timeout,omitempty"`
	// DefaultTTL is assumed when the IdP's answer has no expires_in. Default 5m.
	DefaultTTL Duration `json:"default_ttl,omitempty"`
}

// Upstream says which credential goes upstream. Exactly one field is set.
type Upstream struct {
	// Mint: a token signed by tokengate's issuer.
	Mint *Mint `json:"mint,omitempty"`
	// Fetch: a client-credentials token obtained with tokengate's own credentials.
	Fetch *Fetch `json:"fetch,omitempty"`
	// Exchanged: the token obtained for the caller's credentials (client_credentials routes only).
	Exchanged *Empty `json:"exchanged,omitempty"`
	// Passthrough: the caller's Authorization header goes on unchanged.
	Passthrough *Empty `json:"passthrough,omitempty"`
	// Remove: any Authorization header is stripped.
	Remove *Empty `json:"remove,omitempty"`
}

// Upstream modes, as returned by (*Upstream).Mode.
const (
	UpstreamMint        = "mint"
	UpstreamFetch       = "fetch"
	UpstreamExchanged   = "exchanged"
	UpstreamPassthrough = "passthrough"
	UpstreamRemove      = "remove"
)

// Mode returns the configured mode (UpstreamMint, ...), or "" when none is set (impossible in a
// validated Config).
func (u *Upstream) Mode() string {
	switch {
	case u == nil:
		return ""
	case u.Mint != nil:
		return UpstreamMint
	case u.Fetch != nil:
		return UpstreamFetch
	case u.Exchanged != nil:
		return UpstreamExchanged
	case u.Passthrough != nil:
		return UpstreamPassthrough
	case u.Remove != nil:
		return UpstreamRemove
	}
	return ""
}

// Empty is an option that takes no settings, written `{}` (or left empty: `remove:`).
type Empty struct{}

// Mint describes the token tokengate signs for the upstream.
type Mint struct {
	// Audience of the minted token. Required.
	Audience string `json:"audience,omitempty"`
	// Scopes of the minted token.
	Scopes []string `json:"scopes,omitempty"`
	// TTL of the minted token, never past the caller's own token's exp. Default 5m.
	TTL Duration `json:"ttl,omitempty"`
}

// Fetch obtains a client-credentials token with tokengate's own credentials (gateway level).
type Fetch struct {
	// TokenURL is the IdP's token endpoint. Required.
	TokenURL string `json:"token_url,omitempty"`
	// ClientID is tokengate's client id at the IdP. Required.
	ClientID string `json:"client_id,omitempty"`
	// ClientSecret, usually "${VAR}". Exactly one of ClientSecret and ClientSecretFile.
	ClientSecret string `json:"client_secret,omitempty"`
	// ClientSecretFile holds the secret; one trailing newline is stripped.
	ClientSecretFile string `json:"client_secret_file,omitempty"`
	// Scopes asked for.
	Scopes []string `json:"scopes,omitempty"`
	// Audience, sent as the `audience` form field when set.
	Audience string `json:"audience,omitempty"`
	// EndpointParams are extra form fields. The names grant_type, client_id, client_secret,
	// scope and audience are reserved.
	EndpointParams map[string][]string `json:"endpoint_params,omitempty"`
	// AuthStyle is "basic" (Authorization header) or "body" (form fields). Default "basic".
	AuthStyle string `json:"auth_style,omitempty"`
	// Timeout bounds a Check's whole wait for the token. Default 2s; at most 1m.
	Timeout Duration `json:"timeout,omitempty"`
	// DefaultTTL is assumed when the IdP's answer has no expires_in. Default 5m.
	DefaultTTL Duration `json:"default_ttl,omitempty"`

	// ResolvedSecret is filled by Load/Parse: ClientSecret, or the content of ClientSecretFile.
	ResolvedSecret string `json:"-"`
}

// Cache sizes the caches and optionally shares upstream tokens across replicas.
type Cache struct {
	// VerifiedTokens is the number of entries of the verified-token LRU. Default 100000;
	// allowed 1..10000000.
	VerifiedTokens int `json:"verified_tokens,omitempty"`
	// UpstreamTokens is the number of entries of the upstream-token cache. Default 100000;
	// allowed 1..10000000.
	UpstreamTokens int `json:"upstream_tokens,omitempty"`
	// Redis, when present, shares fetched and exchanged tokens between replicas.
	Redis *Redis `json:"redis,omitempty"`
}

// Redis locates the shared cache: exactly one of Addr, SentinelAddrs (with MasterName) and
// ClusterAddrs.
type Redis struct {
	// Addr is host:port of a single server.
	Addr string `json:"addr,omitempty"`
	// SentinelAddrs are host:port of Sentinels; MasterName is then required.
	SentinelAddrs []string `json:"sentinel_addrs,omitempty"`
	// MasterName is the Sentinel master's name.
	MasterName string `json:"master_name,omitempty"`
	// ClusterAddrs are host:port of cluster nodes (DB must be 0).
	ClusterAddrs []string `json:"cluster_addrs,omitempty"`
	// Username for Redis ACLs.
	Username string `json:"username,omitempty"`
	// Password, usually "${VAR}". At most one of Password and PasswordFile.
	Password string `json:"password,omitempty"`
	// PasswordFile holds the password; one trailing newline is stripped.
	PasswordFile string `json:"password_file,omitempty"`
	// DB is the database number, >= 0.
	DB int `json:"db,omitempty"`
	// TLS configures TLS to Redis.
	TLS TLS `json:"tls"`
	// KeyPrefix prefixes every key. Default "tokengate:".
	KeyPrefix string `json:"key_prefix,omitempty"`
	// EncryptionKeyFile holds the AES-256-GCM key for values at rest: exactly 32 raw bytes, or
	// (one trailing newline ignored) 64 hex digits or the standard/URL base64 (padded or not) of
	// 32 bytes. Optional; without it tokens are stored in clear.
	EncryptionKeyFile string `json:"encryption_key_file,omitempty"`

	// ResolvedPassword is filled by Load/Parse: Password, or the content of PasswordFile.
	ResolvedPassword string `json:"-"`
	// EncryptionKey is filled by Load/Parse: the 32-byte key of EncryptionKeyFile, or nil.
	EncryptionKey []byte `json:"-"`
}

// TLS configures TLS to Redis.
type TLS struct {
	// Enabled turns TLS on. CAFile and ServerName are refused while it is false.
	Enabled bool `json:"enabled,omitempty"`
	// CAFile holds PEM CA certificates to trust instead of the system roots.
	CAFile string `json:"ca_file,omitempty"`
	// ServerName overrides the name checked in the server certificate.
	ServerName string `json:"server_name,omitempty"`

	// CAData is filled by Load/Parse: the content of CAFile (at least one PEM certificate).
	CAData []byte `json:"-"`
}

// Route returns the route named name, or nil.
func (c *Config) Route(name string) *Route {
	if c == nil {
		return nil
	}
	for i := range c.Routes {
		if c.Routes[i].Name == name {
			return &c.Routes[i]
		}
	}
	return nil
}

// Provider returns the provider named name, or nil.
func (c *Config) Provider(name string) *Provider {
	if c == nil {
		return nil
	}
	for i := range c.Providers {
		if c.Providers[i].Name == name {
			return &c.Providers[i]
		}
	}
	return nil
}

// Duration is a time.Duration written as a Go duration string ("90s", "5m", "1h30m").
// Negative durations are refused.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d as time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string; numbers are refused because their unit is ambiguous.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"90s\": %w", err)
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// errNegativeDuration and errBadDuration are the two ways a duration string can be wrong; their
// texts are used as problem messages.
var (
	errNegativeDuration = fmt.Errorf("must not be negative")
	errBadDuration      = fmt.Errorf("must be a duration such as 90s, 5m or 1h")
)

func parseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, errBadDuration
	}
	if v < 0 {
		return 0, errNegativeDuration
	}
	return v, nil
}
