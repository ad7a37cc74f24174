// Package config loads, checks and describes tokengate's configuration file (docs/configuration).
//
// Load and Parse turn a YAML file into a *Config in fixed steps:
//
//  1. go.yaml.in/yaml/v3 parses the file into a node tree (YAML 1.2: yes, no, on and off are
//     strings; anchors, aliases and merge keys (<<) work as YAML defines them);
//  2. one walk of the tree checks it against the yaml tags of the types below, with the full
//     path and line of every problem (unknown keys, wrong shapes, refused scalars), expands
//     ${NAME} references in scalar values (after parsing, so an environment value is text and can
//     never add YAML structure; "$${" writes a literal "${"; a quoted "${NAME}" may give a
//     boolean or integer field its value), and yields a clean tree: aliases and merges
//     expanded, refused values dropped;
//  3. yaml.v3 decodes the clean tree into a Config that already holds the defaults (and each
//     list element or optional section sets its own in UnmarshalYAML), so an absent key keeps
//     its default and an explicit zero wins;
//  4. every Secret and *_file is read, relative to the configuration file's directory;
//  5. the whole configuration is validated.
//
// Every problem is reported at once in a *Errors, one "line N: path: message" line per problem
// in document order. No message ever contains a secret: secret values, URLs and file contents
// are never quoted.
package config

import (
	"fmt"
	"net/netip"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tokengate/tokengate/internal/defaults"
)

// Config is one complete, validated configuration. Values returned by Load and Parse have every
// default applied and every secret resolved; callers treat them as read-only. Each key, its
// default and its rules are described in docs/configuration.md; the fields tagged yaml:"-" are
// filled by Load/Parse.
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
	Clients     []Client     `yaml:"clients"`
}

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
	ClientID           string     `yaml:"client_id"`
	ClientSecretHash   string     `yaml:"client_secret_hash"`
	ClientSecretHashes []string   `yaml:"client_secret_hashes"`
	ClientSecret       Secret     `yaml:"client_secret"`
	Scopes             []string   `yaml:"scopes"`
	DefaultScopes      []string   `yaml:"default_scopes"`
	Audiences          []string   `yaml:"audiences"`
	TokenTTL           Duration   `yaml:"token_ttl"`
	SigningKey         string     `yaml:"signing_key"`
	Claims             Claims     `yaml:"claims"`
	Introspect         bool       `yaml:"introspect"`
	SecretHashes       [][32]byte `yaml:"-"` // SHA-256 of each accepted secret: the issuer needs no plain secret
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
func (a *Authenticate) Mode() string {
	switch {
	case a == nil:
	case a.JWT != nil:
		return AuthJWT
	case a.ClientCredentials != nil:
		return AuthClientCredentials
	case a.None != nil:
		return AuthNone
	}
	return ""
}

// JWTAuth requires a Bearer JWT of one of Providers (names), with all Scopes and Claims.
type JWTAuth struct {
	Providers []string `yaml:"providers"`
	Scopes    []string `yaml:"scopes"`
	Claims    Claims   `yaml:"claims"`
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
	Mint        *Mint  `yaml:"mint"`
	Fetch       *Fetch `yaml:"fetch"`
	Exchanged   *Empty `yaml:"exchanged"`
	Passthrough *Empty `yaml:"passthrough"`
	Remove      *Empty `yaml:"remove"`
}

// Upstream modes, as returned by (*Upstream).Mode.
const (
	UpstreamMint        = "mint"
	UpstreamFetch       = "fetch"
	UpstreamExchanged   = "exchanged"
	UpstreamPassthrough = "passthrough"
	UpstreamRemove      = "remove"
)

// Mode returns the configured mode, or "" when none is set (never in a validated Config).
func (u *Upstream) Mode() string {
	switch {
	case u == nil:
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
	Exchange     `yaml:",inline"`
}

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
	EncryptionKey     []byte   `yaml:"-"`
}

// TLS configures TLS to Redis; CAFile and ServerName require Enabled.
type TLS struct {
	Enabled    bool   `yaml:"enabled"`
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
	CAData     []byte `yaml:"-"`
}

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
// (`client_secret_file: path`); the key names are the field's and the field's with "_file".
// Load reads the file (relative to the configuration's directory, one trailing newline
// stripped); Value returns the secret from either source. It prints as "[secret]".
type Secret struct {
	Inline string `yaml:"value"`
	File   string `yaml:"file"`
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
	v, err := parseDuration(n)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*d = Duration(v)
	return nil
}

// The two ways a duration can be wrong; their texts are problem messages.
var (
	errNegativeDuration = fmt.Errorf("must not be negative")
	errBadDuration      = fmt.Errorf("must be a duration such as 90s, 5m or 1h")
)

func parseDuration(n *yaml.Node) (time.Duration, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return 0, errBadDuration
	}
	v, err := time.ParseDuration(n.Value)
	switch {
	case err != nil:
		return 0, errBadDuration
	case v < 0:
		return 0, errNegativeDuration
	}
	return v, nil
}

// unset marks a client's token_ttl the file leaves out: its default is the issuer's token_ttl.
const unset = Duration(-1)

// The defaults of each section that has some, set before its keys are decoded over them. The
// type conversions (plain) skip these methods inside their own decoding.

func (c *Config) UnmarshalYAML(n *yaml.Node) error {
	type plain Config
	c.Server = Server{GRPCAddr: defaults.GRPCAddr, HTTPAddr: defaults.HTTPAddr,
		MaxTokenBytes: defaults.MaxTokenBytes, ForwardAuthHeaders: ForwardAuthAuto}
	c.Cache = Cache{VerifiedTokens: defaults.CacheEntries, UpstreamTokens: defaults.CacheEntries}
	return n.Decode((*plain)(c))
}

func (is *Issuer) UnmarshalYAML(n *yaml.Node) error {
	type plain Issuer
	*is = Issuer{TokenTTL: Duration(defaults.IssuerTokenTTL)}
	return n.Decode((*plain)(is))
}

func (c *Client) UnmarshalYAML(n *yaml.Node) error {
	type plain Client
	*c = Client{TokenTTL: unset}
	return n.Decode((*plain)(c))
}

func (p *Provider) UnmarshalYAML(n *yaml.Node) error {
	type plain Provider
	*p = Provider{ClockSkew: Duration(defaults.ClockSkew), RefreshInterval: Duration(defaults.RefreshInterval),
		MaxTokenLifetime: Duration(defaults.MaxTokenLifetime)}
	return n.Decode((*plain)(p))
}

func (e *Exchange) defaults() {
	*e = Exchange{AuthStyle: defaults.AuthStyle, Timeout: Duration(defaults.UpstreamTimeout),
		DefaultTTL: Duration(defaults.UpstreamTokenTTL)}
}

func (c *ClientCredentialsAuth) UnmarshalYAML(n *yaml.Node) error {
	type plain ClientCredentialsAuth
	c.Exchange.defaults()
	return n.Decode((*plain)(c))
}

func (f *Fetch) UnmarshalYAML(n *yaml.Node) error {
	type plain Fetch
	f.Exchange.defaults()
	return n.Decode((*plain)(f))
}

func (m *Mint) UnmarshalYAML(n *yaml.Node) error {
	type plain Mint
	*m = Mint{TTL: Duration(defaults.UpstreamTokenTTL)}
	return n.Decode((*plain)(m))
}

func (r *Redis) UnmarshalYAML(n *yaml.Node) error {
	type plain Redis
	*r = Redis{KeyPrefix: defaults.RedisKeyPrefix}
	return n.Decode((*plain)(r))
}
