// Package defaults holds the default values tokengate applies when the configuration leaves a
// setting out (internal/config) or a library option is zero (the packages named on each
// constant). One definition each, so that the configuration's default and a package's
// zero-value behaviour cannot drift apart. Constants only: nothing here has state.
package defaults

import "time"

// Listeners (internal/config: server.grpc_addr, server.http_addr).
const (
	GRPCAddr = ":9001"
	HTTPAddr = ":8080"
)

// MaxTokenBytes bounds a presented token before it is parsed (server.max_token_bytes; the
// zero value of verify.Options.MaxTokenBytes, of extauthz's MaxTokenBytes and of jose.Parse's
// maxBytes). 8 KiB holds any reasonable JWT (RFC 8725 §3.12 asks for size limits on input)
// and stays well under the header limits of Envoy and nginx.
const MaxTokenBytes = 8192

// Verification of presented tokens (providers[]; the zero values of verify.Provider and of
// jwks.Options).
const (
	// ClockSkew tolerated on exp, nbf and iat (providers[].clock_skew; RFC 7519 §4.1.4
	// "some small leeway").
	ClockSkew = 30 * time.Second
	// RefreshInterval between JWKS refreshes (providers[].refresh_interval; verify, jwks).
	RefreshInterval = 15 * time.Minute
	// MaxTokenLifetime: a token whose exp-iat (or exp-now without iat) is larger is refused
	// (providers[].max_token_lifetime; verify).
	MaxTokenLifetime = 24 * time.Hour
)

// IssuerTokenTTL is the lifetime of tokens of the built-in issuer (issuer.token_ttl, and a
// client's token_ttl when it has none; the zero value of issuer.Config.TokenTTL).
const IssuerTokenTTL = time.Hour

// Upstream tokens (routes[].authenticate.client_credentials, routes[].upstream.fetch and
// routes[].upstream.mint; the zero values of upstream.ClientCredentials).
const (
	// UpstreamTimeout bounds a caller's whole wait for an upstream token (timeout).
	UpstreamTimeout = 2 * time.Second
	// UpstreamTokenTTL is the lifetime of an IdP's token whose answer has no expires_in
	// (default_ttl; RFC 6749 §5.1 makes expires_in only RECOMMENDED) and of a minted token (ttl).
	UpstreamTokenTTL = 5 * time.Minute
	// AuthStyle is how tokengate authenticates at a token endpoint: HTTP Basic
	// (client_secret_basic), which every server must support (RFC 6749 §2.3.1).
	AuthStyle = "basic"
)

// CacheEntries bounds the in-memory caches (cache.verified_tokens and cache.upstream_tokens;
// the zero value of upstream.Options.Size).
const CacheEntries = 100_000

// RedisKeyPrefix starts every key tokengate writes to Redis (cache.redis.key_prefix; the zero
// value of redisstore.Options.KeyPrefix).
const RedisKeyPrefix = "tokengate:"
