package config

import (
	"fmt"
	"time"
)

// Defaults of SPEC section 3, applied to keys absent from the file (a key written with an
// explicit zero keeps it, and validation then says whether zero is allowed).
const (
	DefaultGRPCAddr         = ":9001"
	DefaultHTTPAddr         = ":8080"
	DefaultMaxTokenBytes    = 8192
	DefaultIssuerTokenTTL   = time.Hour
	DefaultClockSkew        = 30 * time.Second
	DefaultRefreshInterval  = 15 * time.Minute
	DefaultMaxTokenLifetime = 24 * time.Hour
	DefaultTimeout          = 2 * time.Second
	DefaultTokenTTL         = 5 * time.Minute // fetch/client_credentials default_ttl and mint ttl
	DefaultAuthStyle        = "basic"
	DefaultCacheEntries     = 100_000
	DefaultKeyPrefix        = "tokengate:"
)

// DefaultAlgorithms is the allow-list of an external provider that lists none.
func DefaultAlgorithms() []string { return []string{"RS256", "ES256", "PS256", "EdDSA"} }

// applyDefaults fills every absent key that has a default. present holds the paths the file
// gave a value to.
func applyDefaults(cfg *Config, present map[string]bool) {
	has := func(format string, args ...any) bool { return present[fmt.Sprintf(format, args...)] }

	if !has("server.grpc_addr") {
		cfg.Server.GRPCAddr = DefaultGRPCAddr
	}
	if !has("server.http_addr") {
		cfg.Server.HTTPAddr = DefaultHTTPAddr
	}
	if !has("server.max_token_bytes") {
		cfg.Server.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if !has("server.forward_auth_headers") {
		cfg.Server.ForwardAuthHeaders = ForwardAuthAuto
	}

	if is := cfg.Issuer; is != nil {
		if !has("issuer.token_ttl") {
			is.TokenTTL = Duration(DefaultIssuerTokenTTL)
		}
		for i := range is.Clients {
			if !has("issuer.clients[%d].token_ttl", i) {
				is.Clients[i].TokenTTL = is.TokenTTL
			}
		}
	}

	for i := range cfg.Providers {
		pr := &cfg.Providers[i]
		if !has("providers[%d].algorithms", i) {
			pr.Algorithms = DefaultAlgorithms()
			if pr.IsSelf() && cfg.Issuer != nil {
				if algs := signingAlgorithms(cfg.Issuer); len(algs) > 0 {
					pr.Algorithms = algs
				}
			}
		}
		if !has("providers[%d].clock_skew", i) {
			pr.ClockSkew = Duration(DefaultClockSkew)
		}
		if !has("providers[%d].refresh_interval", i) {
			pr.RefreshInterval = Duration(DefaultRefreshInterval)
		}
		if !has("providers[%d].max_token_lifetime", i) {
			pr.MaxTokenLifetime = Duration(DefaultMaxTokenLifetime)
		}
	}

	for i := range cfg.Routes {
		rt := &cfg.Routes[i]
		if cc := rt.Authenticate.ClientCredentials; cc != nil {
			base := fmt.Sprintf("routes[%d].authenticate.client_credentials", i)
			exchangeDefaults(present, base, &cc.AuthStyle, &cc.Timeout, &cc.DefaultTTL)
		}
		if f := rt.Upstream.Fetch; f != nil {
			base := fmt.Sprintf("routes[%d].upstream.fetch", i)
			exchangeDefaults(present, base, &f.AuthStyle, &f.Timeout, &f.DefaultTTL)
		}
		if m := rt.Upstream.Mint; m != nil && !has("routes[%d].upstream.mint.ttl", i) {
			m.TTL = Duration(DefaultTokenTTL)
		}
	}

	if !has("cache.verified_tokens") {
		cfg.Cache.VerifiedTokens = DefaultCacheEntries
	}
	if !has("cache.upstream_tokens") {
		cfg.Cache.UpstreamTokens = DefaultCacheEntries
	}
	if r := cfg.Cache.Redis; r != nil && !has("cache.redis.key_prefix") {
		r.KeyPrefix = DefaultKeyPrefix
	}
}

func exchangeDefaults(present map[string]bool, base string, authStyle *string, timeout, defaultTTL *Duration) {
	if !present[base+".auth_style"] {
		*authStyle = DefaultAuthStyle
	}
	if !present[base+".timeout"] {
		*timeout = Duration(DefaultTimeout)
	}
	if !present[base+".default_ttl"] {
		*defaultTTL = Duration(DefaultTokenTTL)
	}
}

// signingAlgorithms returns the distinct valid algorithms of the issuer's signing keys, the
// allow-list of an `issuer: self` provider that lists none.
func signingAlgorithms(is *Issuer) []string {
	var out []string
	seen := map[string]bool{}
	for _, k := range is.SigningKeys {
		if signingAlgs[k.Alg] && !seen[k.Alg] {
			seen[k.Alg] = true
			out = append(out, k.Alg)
		}
	}
	return out
}
