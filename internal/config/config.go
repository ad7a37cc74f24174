// Package config loads and checks tokengate's configuration file. docs/configuration.md is the
// reference for every key, its default and its rules.
//
// go.yaml.in/yaml/v3 parses the file (YAML 1.2: yes and on are strings; anchors, aliases and
// merge keys work as YAML defines them). One walk of the node tree then checks it against the
// yaml tags of the types below and stores it in a Config that already holds the defaults, so an
// absent key keeps its default and an explicit zero wins. ${NAME} is expanded in scalar values
// after parsing, so an environment value is text and never adds YAML structure. Files named by
// the configuration are read relative to its directory, and the whole is validated. Every
// problem is reported at once, "line N: path: message", in document order; no message contains
// a secret (secret values, URLs and file contents are never quoted).
package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tokengate/tokengate/internal/defaults"
	"github.com/tokengate/tokengate/internal/introspect"
	"github.com/tokengate/tokengate/internal/jose"
)

// Config is one complete, validated configuration, with every default applied and every secret
// resolved; callers treat it as read-only. Fields tagged yaml:"-" are filled by Load and Parse.
type Config struct {
	Server    Server     `yaml:"server"`
	Issuer    *Issuer    `yaml:"issuer"`
	Providers []Provider `yaml:"providers"`
	Routes    []Route    `yaml:"routes"`
	Cache     Cache      `yaml:"cache"`
	Warnings  []Problem  `yaml:"-"` // allowed but probably wrong: `validate` prints, `serve` logs
}

// Server holds the listeners and request limits.
type Server struct {
	GRPCAddr             string         `yaml:"grpc_addr"`
	HTTPAddr             string         `yaml:"http_addr"`
	MaxTokenBytes        int            `yaml:"max_token_bytes"`
	AllowHTTPURLs        bool           `yaml:"allow_http_urls"`
	AuthzAddr            string         `yaml:"authz_addr"`
	MetricsAddr          string         `yaml:"metrics_addr"`
	GatewayTLS           *GatewayTLS    `yaml:"gateway_tls"`
	ForwardAuthHeaders   string         `yaml:"forward_auth_headers"`
	ClientCertHeader     string         `yaml:"client_cert_header"`
	TrustedProxies       []string       `yaml:"trusted_proxies"`
	TrustedProxyPrefixes []netip.Prefix `yaml:"-"` // TrustedProxies parsed
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
	CertFile                        string   `yaml:"cert_file"`
	KeyFile                         string   `yaml:"key_file"`
	ClientCAFile                    string   `yaml:"client_ca_file"`
	ClientSANs                      []string `yaml:"client_sans"`
	CertPath, KeyPath, ClientCAPath string   `yaml:"-"` // resolved paths: the server re-reads the files
}

// Issuer configures tokengate's own OAuth2 client-credentials server.
type Issuer struct {
	IssuerURL   string       `yaml:"issuer_url"`
	TokenTTL    Duration     `yaml:"token_ttl"`
	SigningKeys []SigningKey `yaml:"signing_keys"`
	// TokenExchange enables the RFC 8693 grant at the token endpoint (docs/issuer.md).
	TokenExchange *IssuerTokenExchange `yaml:"token_exchange"`
	Clients       []Client             `yaml:"clients"`
}

// IssuerTokenExchange is issuer.token_exchange: whose tokens may be exchanged.
type IssuerTokenExchange struct {
	// SubjectProviders name the providers whose tokens are accepted as subject_token (`self`
	// allowed when it is a provider).
	SubjectProviders []string `yaml:"subject_providers"`
}

// Client grant types (Client.GrantTypes).
const (
	GrantClientCredentials = "client_credentials"
	GrantTokenExchange     = "token_exchange"
)

// SigningKey is one private key of the issuer.
type SigningKey struct {
	Kid      string `yaml:"kid"`
	Alg      string `yaml:"alg"`
	File     string `yaml:"file"`
	Generate bool   `yaml:"generate"`
	KeyData  []byte `yaml:"-"` // File's content, parsed by internal/jose
}

// Client is one OAuth2 client of the issuer, with exactly one secret source among
// ClientSecretHash, ClientSecretHashes and ClientSecret (inline or file).
type Client struct {
	ClientID           string   `yaml:"client_id"`
	ClientSecretHash   string   `yaml:"client_secret_hash"`
	ClientSecretHashes []string `yaml:"client_secret_hashes"`
	ClientSecret       Secret   `yaml:"client_secret"`
	Scopes             []string `yaml:"scopes"`
	DefaultScopes      []string `yaml:"default_scopes"`
	Audiences          []string `yaml:"audiences"`
	TokenTTL           Duration `yaml:"token_ttl"`
	SigningKey         string   `yaml:"signing_key"`
	Claims             Claims   `yaml:"claims"`
	Introspect         bool     `yaml:"introspect"`
	// GrantTypes the client may use: client_credentials (the default) and token_exchange.
	GrantTypes []string `yaml:"grant_types"`
	// JWKS (inline set) or JWKSURI: the client authenticates by private_key_jwt (RFC 7523 §2.2)
	// with a key of this set, instead of a secret.
	JWKS         Claims     `yaml:"jwks"`
	JWKSURI      string     `yaml:"jwks_uri"`
	SecretHashes [][32]byte `yaml:"-"` // SHA-256 of each accepted secret (no plain secret kept)
}

// Provider is an issuer whose JWTs callers may present, or the built-in issuer (`issuer: self`).
type Provider struct {
	Name             string   `yaml:"name"`
	Issuer           string   `yaml:"issuer"`
	JWKSURI          string   `yaml:"jwks_uri"`
	Discovery        bool     `yaml:"discovery"`
	Audiences        []string `yaml:"audiences"`
	Algorithms       []string `yaml:"algorithms"`
	ClockSkew        Duration `yaml:"clock_skew"`
	RefreshInterval  Duration `yaml:"refresh_interval"`
	RequireTyp       string   `yaml:"require_typ"`
	MaxTokenLifetime Duration `yaml:"max_token_lifetime"`
	// Introspection makes this an opaque-token provider (RFC 7662): instead of jwks_uri,
	// discovery or issuer: self.
	Introspection *Introspection `yaml:"introspection"`
	// RequireBinding refuses this provider's tokens that are not sender-constrained in that way
	// (one of the Binding* values; "" is none). A token carrying cnf is checked regardless.
	RequireBinding string `yaml:"require_binding"`
}

// The values of require_binding: which proof of possession a token must be bound to (RFC 9449
// DPoP, RFC 8705 client certificates, or either).
const (
	BindingNone = "none"
	BindingDPoP = "dpop"
	BindingMTLS = "mtls"
	BindingAny  = "any"
)

// Introspection is a provider's RFC 7662 endpoint and tokengate's client there, which
// authenticates as at a token endpoint: a secret (client_secret_basic, RFC 6749 §2.3.1) or one
// of the ClientAssertion ways.
type Introspection struct {
	URL             string `yaml:"url"`
	ClientID        string `yaml:"client_id"`
	ClientSecret    Secret `yaml:"client_secret"`
	ClientAssertion `yaml:",inline"`
	CacheTTL        Duration `yaml:"cache_ttl"`
	NegativeTTL     Duration `yaml:"negative_ttl"`
}

// ClientsSelf is the client_credentials.clients value naming the issuer's own clients.
const ClientsSelf = "self"

// SelfIssuer is the Provider.Issuer value naming tokengate's built-in issuer.
const SelfIssuer = "self"

// IsSelf reports whether p is the built-in issuer, verified with its own keys and no HTTP.
func (p *Provider) IsSelf() bool { return p != nil && p.Issuer == SelfIssuer }

// Route is one entry of `routes`.
type Route struct {
	Name          string            `yaml:"name"`
	Match         Match             `yaml:"match"`
	Authenticate  Authenticate      `yaml:"authenticate"`
	Upstream      Upstream          `yaml:"upstream"`
	ForwardClaims map[string]string `yaml:"forward_claims"`
}

// Match selects a route from the request; empty fields match anything.
type Match struct {
	IgnoreCase bool     `yaml:"ignore_case"`
	Authority  string   `yaml:"authority"`
	PathPrefix string   `yaml:"path_prefix"`
	Methods    []string `yaml:"methods"`
}

// Authenticate says how callers prove who they are. Exactly one field is set.
type Authenticate struct {
	JWT               *JWTAuth               `yaml:"jwt"`
	ClientCredentials *ClientCredentialsAuth `yaml:"client_credentials"`
	None              *Empty                 `yaml:"none"`
}

// Authenticate modes, as returned by (*Authenticate).Mode.
const (
	AuthJWT               = "jwt"
	AuthClientCredentials = "client_credentials"
	AuthNone              = "none"
)

// Mode returns the configured mode, or "" when none is set (never in a validated Config).
func (a *Authenticate) Mode() string { return mode(a) }

// JWTAuth requires a Bearer JWT of one of Providers (names), with all Scopes and Claims.
type JWTAuth struct {
	Providers []string `yaml:"providers"`
	Scopes    []string `yaml:"scopes"`
	Claims    Claims   `yaml:"claims"`
	// RequireBinding is as the provider's key: either one refuses unbound tokens.
	RequireBinding string `yaml:"require_binding"`
}

// ClientCredentialsAuth verifies the caller's Basic credentials at an IdP (RFC 6749 §4.4) or
// against the issuer's clients.
type ClientCredentialsAuth struct {
	TokenURL string `yaml:"token_url"`
	Clients  string `yaml:"clients"`
	Exchange `yaml:",inline"`
}

// Exchange holds the settings of a client-credentials request, shared by fetch and
// client_credentials.
type Exchange struct {
	Scopes         []string            `yaml:"scopes"`
	Audience       string              `yaml:"audience"`
	EndpointParams map[string][]string `yaml:"endpoint_params"`
	AuthStyle      string              `yaml:"auth_style"`
	Timeout        Duration            `yaml:"timeout"`
	DefaultTTL     Duration            `yaml:"default_ttl"`
}

// Upstream says which credential goes upstream. Exactly one field is set.
type Upstream struct {
	Mint      *Mint  `yaml:"mint"`
	Fetch     *Fetch `yaml:"fetch"`
	Exchanged *Empty `yaml:"exchanged"`
	// TokenExchange exchanges the caller's token for one meant for the upstream (RFC 8693).
	TokenExchange *TokenExchange `yaml:"token_exchange"`
	Passthrough   *Empty         `yaml:"passthrough"`
	Remove        *Empty         `yaml:"remove"`
}

// Upstream modes, as returned by (*Upstream).Mode.
const (
	UpstreamMint          = "mint"
	UpstreamFetch         = "fetch"
	UpstreamExchanged     = "exchanged"
	UpstreamTokenExchange = "token_exchange"
	UpstreamPassthrough   = "passthrough"
	UpstreamRemove        = "remove"
)

// Mode returns the configured mode, or "" when none is set (never in a validated Config).
func (u *Upstream) Mode() string { return mode(u) }

// options returns the keys of the options of *v, an Authenticate or Upstream (whose modes are
// their keys), and the keys of those set, in field order.
func options(v any) (all, set []string) {
	rv := reflect.ValueOf(v)
	for i := 0; !rv.IsNil() && i < rv.Elem().NumField(); i++ {
		all = append(all, rv.Elem().Type().Field(i).Tag.Get("yaml"))
		if !rv.Elem().Field(i).IsNil() {
			set = append(set, all[i])
		}
	}
	return all, set
}

func mode(v any) string {
	if _, set := options(v); len(set) > 0 {
		return set[0]
	}
	return ""
}

// Empty is an option without settings, written `{}` (or nothing: `remove:`).
type Empty struct{}

// Mint describes the token tokengate signs for the upstream.
type Mint struct {
	Audience string   `yaml:"audience"`
	Scopes   []string `yaml:"scopes"`
	TTL      Duration `yaml:"ttl"`
}

// Fetch obtains a client-credentials token with tokengate's own credentials.
type Fetch struct {
	TokenURL     string `yaml:"token_url"`
	ClientID     string `yaml:"client_id"`
	ClientSecret Secret `yaml:"client_secret"`
	ClientAssertion
	Exchange `yaml:",inline"`
}

// ClientAssertion holds the ways other than a secret that tokengate's client authenticates to
// an IdP's token endpoint: a JWT signed with its own key (private_key_jwt, RFC 7523 §2.2) or a
// ready-made assertion read from a file on every request (a projected Kubernetes
// service-account token, RFC 7521 §4.2). At most one of them, and then no client secret.
type ClientAssertion struct {
	PrivateKey          *ClientKey `yaml:"private_key"`
	ClientAssertionFile string     `yaml:"client_assertion_file"`
	// AssertionAudience is the private_key_jwt assertion's aud; "" means the token URL.
	AssertionAudience string `yaml:"assertion_audience"`
	// AssertionPath is ClientAssertionFile resolved against the configuration's directory.
	AssertionPath string `yaml:"-"`
	// TLS is tls_client_auth (RFC 8705 §2): the client's certificate authenticates it in the
	// TLS handshake with the token endpoint.
	TLS *ClientTLS `yaml:"tls"`
}

// ClientTLS is a client certificate and key (PEM files, re-read when they change) and the CAs
// trusted for the token endpoint (default: the system's). The *Path fields are the files
// resolved against the configuration's directory.
type ClientTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`

	CertPath, KeyPath, CAPath string `yaml:"-"`
}

// ClientKey is the private key of a private_key_jwt client: a PEM or private JWK file, the
// JWS algorithm and the kid put in the assertion's header (from the JWK when it has them).
type ClientKey struct {
	File string `yaml:"file"`
	Alg  string `yaml:"alg"`
	Kid  string `yaml:"kid"`
	// Key is File parsed by internal/jose at load.
	Key *jose.SigningKey `yaml:"-"`
}

// TokenExchange sends the caller's verified token to TokenURL as an RFC 8693 subject_token,
// authenticated as tokengate's client, and sends the answer's access_token upstream.
type TokenExchange struct {
	TokenURL           string `yaml:"token_url"`
	ClientID           string `yaml:"client_id"`
	ClientSecret       Secret `yaml:"client_secret"`
	ClientAssertion    `yaml:",inline"`
	AuthStyle          string   `yaml:"auth_style"`
	Audience           string   `yaml:"audience"`
	Resource           string   `yaml:"resource"`
	Scopes             []string `yaml:"scopes"`
	SubjectTokenType   string   `yaml:"subject_token_type"`
	RequestedTokenType string   `yaml:"requested_token_type"`
	Timeout            Duration `yaml:"timeout"`
}

// TokenTypeAccessToken is the default subject_token_type and requested_token_type (RFC 8693 §3).
const TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"

// Cache sizes the caches and optionally shares upstream tokens across replicas.
type Cache struct {
	VerifiedTokens int    `yaml:"verified_tokens"`
	UpstreamTokens int    `yaml:"upstream_tokens"`
	Redis          *Redis `yaml:"redis"`
}

// Redis locates the shared cache: exactly one of Addr, SentinelAddrs (with MasterName) and
// ClusterAddrs.
type Redis struct {
	Addr              string   `yaml:"addr"`
	SentinelAddrs     []string `yaml:"sentinel_addrs"`
	MasterName        string   `yaml:"master_name"`
	ClusterAddrs      []string `yaml:"cluster_addrs"`
	Username          string   `yaml:"username"`
	Password          Secret   `yaml:"password"`
	DB                int      `yaml:"db"`
	TLS               TLS      `yaml:"tls"`
	KeyPrefix         string   `yaml:"key_prefix"`
	EncryptionKeyFile string   `yaml:"encryption_key_file"`
	EncryptionKey     []byte   `yaml:"-"` // the file's 32-byte key
}

// TLS configures TLS to Redis; CAFile and ServerName require Enabled.
type TLS struct {
	Enabled    bool   `yaml:"enabled"`
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
	CAData     []byte `yaml:"-"` // CAFile's content
}

// setDefaults sets the defaults of the section p points to before its keys are stored over
// them (docs/configuration.md lists them).
func setDefaults(p any) {
	switch p := p.(type) {
	case *Config:
		p.Server = Server{GRPCAddr: defaults.GRPCAddr, HTTPAddr: defaults.HTTPAddr,
			MaxTokenBytes: defaults.MaxTokenBytes, ForwardAuthHeaders: ForwardAuthAuto}
		p.Cache = Cache{VerifiedTokens: defaults.CacheEntries, UpstreamTokens: defaults.CacheEntries}
	case *Issuer:
		p.TokenTTL = Duration(defaults.IssuerTokenTTL)
	case *Client:
		p.TokenTTL = unset
	case *Provider:
		p.ClockSkew, p.RefreshInterval = Duration(defaults.ClockSkew), Duration(defaults.RefreshInterval)
		p.MaxTokenLifetime = Duration(defaults.MaxTokenLifetime)
	case *Introspection:
		p.CacheTTL, p.NegativeTTL = Duration(introspect.DefaultCacheTTL), Duration(introspect.DefaultNegativeTTL)
	case *Mint:
		p.TTL = Duration(defaults.UpstreamTokenTTL)
	case *Redis:
		p.KeyPrefix = defaults.RedisKeyPrefix
	case *Fetch:
		setDefaults(&p.Exchange)
	case *ClientCredentialsAuth:
		setDefaults(&p.Exchange)
	case *TokenExchange:
		p.AuthStyle, p.Timeout = defaults.AuthStyle, Duration(defaults.UpstreamTimeout)
		p.SubjectTokenType, p.RequestedTokenType = TokenTypeAccessToken, TokenTypeAccessToken
	case *Exchange:
		p.AuthStyle, p.Timeout = defaults.AuthStyle, Duration(defaults.UpstreamTimeout)
		p.DefaultTTL = Duration(defaults.UpstreamTokenTTL)
	}
}

// unset marks a client's token_ttl the file leaves out: its default is the issuer's token_ttl.
const unset = Duration(-1)

// Route returns the route named name, or nil.
func (c *Config) Route(name string) *Route {
	for i := 0; c != nil && i < len(c.Routes); i++ {
		if c.Routes[i].Name == name {
			return &c.Routes[i]
		}
	}
	return nil
}

// Provider returns the provider named name, or nil.
func (c *Config) Provider(name string) *Provider {
	for i := 0; c != nil && i < len(c.Providers); i++ {
		if c.Providers[i].Name == name {
			return &c.Providers[i]
		}
	}
	return nil
}

// Secret is a secret written inline (`client_secret: "${VAR}"`) or in a file
// (`client_secret_file: path`, read relative to the configuration's directory, one trailing
// newline stripped). It prints as "[secret]".
type Secret struct {
	Inline string // the value written in the configuration
	File   string // the file holding the value
	value  string
}

// Value returns the resolved secret ("" when none is configured).
func (s Secret) Value() string { return s.value }

// String never shows the secret, so printing a configuration leaks nothing.
func (s Secret) String() string { return "[secret]" }

// Claims are static or required claims; numbers are json.Number with the digits written.
type Claims map[string]any

// Duration is a time.Duration written as a Go duration string ("90s", "5m", "1h30m"); numbers
// (whose unit would be ambiguous) and negative durations are refused.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d as time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, errBadDuration)}}
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*d = v
	return nil
}

// The two ways a duration can be wrong; their texts are problem messages.
var (
	errNegativeDuration = fmt.Errorf("must not be negative")
	errBadDuration      = fmt.Errorf("must be a duration such as 90s, 5m or 1h")
)

func parseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, errBadDuration
	case v < 0:
		return 0, errNegativeDuration
	}
	return Duration(v), nil
}
