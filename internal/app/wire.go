package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"

	"github.com/tokengate/tokengate/extauthz"
	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/introspect"
	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/jwks"
	"github.com/tokengate/tokengate/internal/upstream"
	"github.com/tokengate/tokengate/internal/upstream/redisstore"
	"github.com/tokengate/tokengate/internal/verify"
	"github.com/tokengate/tokengate/issuer"
)

// build turns a validated configuration into a state. prev (may be nil) is the state being
// replaced: providers and private_key_jwt clients whose key settings did not change keep their
// key caches.
func (a *App) build(ctx context.Context, cfg *config.Config, prev *state) (*state, error) {
	st := &state{}
	built := false
	defer func() {
		if !built { // a failed build closes the client key sources it started, not prev's
			st.closeClientKeys(prev)
		}
	}()
	// The issuer is built before the verifier (the self provider needs its keys), so subject
	// tokens of the token-exchange grant are verified through the verifier set below.
	subjects := &lateVerifier{}
	if cfg.Issuer != nil {
		var prevIssuer *issuer.Issuer
		if prev != nil {
			prevIssuer = prev.issuer
		}
		ic := issuerConfig(cfg.Issuer)
		if err := a.clientKeys(ctx, cfg, &ic, st, prev); err != nil {
			return nil, fmt.Errorf("issuer: %w", err)
		}
		opts := issuer.Options{
			Logger: a.logger, Metrics: a.metrics, Now: a.opts.Now, Previous: prevIssuer,
			Limiter: a.limiter, TrustedProxies: cfg.Server.TrustedProxyPrefixes, Replay: a.assertions,
		}
		if len(ic.SubjectProviders) > 0 {
			opts.Subjects = subjects
		}
		iss, err := issuer.New(ic, opts)
		if err != nil {
			return nil, fmt.Errorf("issuer: %w", err)
		}
		st.issuer = iss
		st.issuerMux = http.NewServeMux()
		iss.Register(st.issuerMux)
	}

	var providers []verify.Provider
	for _, p := range cfg.Providers {
		vp := verify.Provider{
			Name: p.Name, Issuer: p.Issuer, JWKSURI: p.JWKSURI, Discovery: p.Discovery,
			Audiences: p.Audiences, Algorithms: p.Algorithms,
			ClockSkew: p.ClockSkew.Std(), RefreshInterval: p.RefreshInterval.Std(),
			MaxTokenLifetime: p.MaxTokenLifetime.Std(), RequireTyp: p.RequireTyp,
		}
		if in := p.Introspection; in != nil {
			// An opaque-token provider (RFC 7662): its answers are cached per generation.
			// Its client authenticates as at a token endpoint (RFC 7662 §2.1 leaves the method to
			// the server): a secret sent as client_secret_basic, an assertion, or mutual TLS.
			auth, err := a.clientAuth(in.ClientID, in.ClientSecret, upstream.AuthStyleBasic, in.ClientAssertion)
			if err != nil {
				return nil, fmt.Errorf("providers: %s: introspection: %w", p.Name, err)
			}
			hc := a.opts.HTTPClient
			if t, ok := auth.(*upstream.TLSClientAuth); ok {
				hc = &http.Client{Transport: t.Transport()}
			}
			c, err := introspect.New(introspect.Config{
				Provider: p.Name, URL: in.URL, ClientID: in.ClientID, Auth: auth,
				AllowHTTP: cfg.Server.AllowHTTPURLs, CacheTTL: in.CacheTTL.Std(), NegativeTTL: in.NegativeTTL.Std(),
				CacheSize: cfg.Cache.VerifiedTokens, HTTPClient: hc, Metrics: a.metrics, Now: a.opts.Now,
				Shared: a.introspectionShared(), // the fleet's answers (Redis), behind the local cache
			})
			if err != nil {
				return nil, fmt.Errorf("providers: %w", err)
			}
			vp.Introspection = c
		}
		if p.IsSelf() {
			if st.issuer == nil { // config validation refuses this; keep the guard for wiring bugs
				return nil, fmt.Errorf("provider %s: issuer: self needs the issuer section", p.Name)
			}
			vp.Issuer = st.issuer.IssuerURL()
			vp.JWKSURI, vp.Discovery = "", false
			vp.StaticJWKS = st.issuer.PublicJWKS()
			if len(vp.Audiences) == 0 {
				// self accepts the audiences its clients may ask for, and no other (a token a mint route signed
				// is for its upstream only: RFC 8725 §3.9; docs/configuration.md#providers).
				vp.Audiences = st.issuer.Audiences()
			}
		}
		providers = append(providers, vp)
	}
	var prevVerifier *verify.Verifier
	if prev != nil {
		prevVerifier = prev.verifier
	}
	v, err := verify.New(ctx, verify.Options{
		Providers: providers, CacheSize: cfg.Cache.VerifiedTokens, MaxTokenBytes: cfg.Server.MaxTokenBytes,
		HTTPClient: a.opts.HTTPClient, AllowHTTP: cfg.Server.AllowHTTPURLs,
		Logger: a.logger, Metrics: a.metrics, Now: a.opts.Now, Previous: prevVerifier,
		KeepClaims: keepClaims(cfg),
	})
	if err != nil {
		return nil, fmt.Errorf("providers: %w", err)
	}
	st.verifier = v
	subjects.v = v

	routes := make([]extauthz.Route, 0, len(cfg.Routes))
	for _, r := range cfg.Routes {
		er, err := a.route(r, st.issuer, cfg.Server.AllowHTTPURLs)
		if err != nil {
			v.Close()
			return nil, fmt.Errorf("routes: %s: %w", r.Name, err)
		}
		routes = append(routes, er)
	}
	deps := extauthz.Deps{
		Verifier: v, MaxTokenBytes: cfg.Server.MaxTokenBytes,
		Logger: a.logger, Metrics: a.metrics, Now: a.opts.Now,
	}
	if st.issuer != nil {
		deps.Clients = st.issuer
	}
	if a.limiter != nil {
		deps.Limiter = a.limiter
	}
	// Sender-constrained tokens (RFC 9449, RFC 8705): each provider's binding settings; the DPoP
	// replay cache belongs to the process, so a reload never forgets a jti it has seen.
	deps.Replay = a.replay
	deps.Bindings = make(map[string]extauthz.Binding, len(cfg.Providers))
	for _, p := range cfg.Providers {
		deps.Bindings[p.Name] = extauthz.Binding{Require: p.RequireBinding, Algorithms: p.Algorithms, ClockSkew: p.ClockSkew.Std()}
	}
	authz, err := extauthz.New(routes, deps)
	if err != nil {
		v.Close()
		return nil, fmt.Errorf("routes: %w", err)
	}
	st.authorizer = authz
	// /authz decides with this state's authorizer: the handler and the routes it judges are one
	// generation, swapped together.
	st.forwardAuth = extauthz.NewForwardAuth(authz, a.logger, extauthz.ForwardAuthOptions{
		Headers: cfg.Server.ForwardAuthHeaders, TrustedProxies: cfg.Server.TrustedProxyPrefixes,
		ClientCertHeader: cfg.Server.ClientCertHeader,
	})
	for _, w := range cfg.Warnings {
		a.logger.Warn("configuration: "+w.Message, slog.String("field", w.Path))
	}
	built = true
	return st, nil
}

func issuerConfig(c *config.Issuer) issuer.Config {
	ic := issuer.Config{IssuerURL: c.IssuerURL, TokenTTL: c.TokenTTL.Std()}
	if c.TokenExchange != nil {
		ic.SubjectProviders = c.TokenExchange.SubjectProviders
	}
	for _, k := range c.SigningKeys {
		ic.Keys = append(ic.Keys, issuer.KeyConfig{Kid: k.Kid, Alg: k.Alg, PEM: k.KeyData, Generate: k.Generate})
	}
	for _, cl := range c.Clients {
		ic.Clients = append(ic.Clients, issuer.Client{
			ID: cl.ClientID, SecretHashes: cl.SecretHashes, Scopes: cl.Scopes, DefaultScopes: cl.DefaultScopes,
			Audiences: cl.Audiences, TokenTTL: cl.TokenTTL.Std(), SigningKey: cl.SigningKey, Claims: cl.Claims,
			Introspect: cl.Introspect, TokenExchange: slices.Contains(cl.GrantTypes, config.GrantTokenExchange),
		})
	}
	return ic
}

// route maps one validated configuration route onto the authorizer's terms, with the route's
// token sources built from it: an ExchangeSource verifies a client_credentials caller at its
// token_url, and the upstream Source is the route's one way to obtain its upstream token
// (mint: the issuer signs; fetch: tokengate's own credentials; exchanged: the token the
// verification obtained). The sources use the process's token cache, so a reload keeps every
// cached token whose key (everything that selects it) is unchanged. iss is this configuration's
// issuer, nil without one; allowHTTP is its server.allow_http_urls, which the sources apply to
// their token URLs (the cache is built once and would hold the start-up value).
func (a *App) route(r config.Route, iss *issuer.Issuer, allowHTTP bool) (extauthz.Route, error) {
	policy := upstream.AllowHTTP(allowHTTP)
	out := extauthz.Route{
		Name: r.Name, Authority: r.Match.Authority, PathPrefix: r.Match.PathPrefix, Methods: r.Match.Methods,
		IgnoreCase: r.Match.IgnoreCase, ForwardClaims: r.ForwardClaims,
	}
	var exchange *upstream.ExchangeSource
	switch r.Authenticate.Mode() {
	case config.AuthJWT:
		j := r.Authenticate.JWT
		out.Auth, out.Providers, out.Scopes, out.Claims = extauthz.AuthJWT, j.Providers, j.Scopes, j.Claims
		out.RequireBinding = j.RequireBinding
	case config.AuthClientCredentials:
		c := r.Authenticate.ClientCredentials
		out.Auth = extauthz.AuthClientCredentials
		out.ClientsSelf = c.Clients == config.ClientsSelf
		if !out.ClientsSelf {
			var err error
			exchange, err = upstream.NewExchangeSource(a.tokens, r.Name, upstream.ClientCredentials{
				TokenURL: c.TokenURL, Scopes: c.Scopes, Audience: c.Audience, EndpointParams: c.EndpointParams,
				AuthStyle: c.AuthStyle, Timeout: c.Timeout.Std(), DefaultTTL: c.DefaultTTL.Std(),
			}, policy)
			if err != nil {
				return out, fmt.Errorf("authenticate.client_credentials: %w", err)
			}
			out.Exchange = exchange
		}
	default:
		out.Auth = extauthz.AuthNone
	}
	// Config validation refuses the combinations refused below; the guards catch wiring bugs.
	switch r.Upstream.Mode() {
	case config.UpstreamMint:
		if iss == nil {
			return out, errors.New("upstream mint needs the issuer section")
		}
		m := r.Upstream.Mint
		out.Upstream = extauthz.UpstreamToken
		out.Source = upstream.NewMintSource(a.tokens, r.Name, iss, issuer.MintRequest{
			Audience: m.Audience, Scopes: m.Scopes, TTL: m.TTL.Std(),
		})
	case config.UpstreamFetch:
		f := r.Upstream.Fetch
		out.Upstream = extauthz.UpstreamToken
		cc := upstream.ClientCredentials{
			TokenURL: f.TokenURL, ClientID: f.ClientID, ClientSecret: f.ClientSecret.Value(), Scopes: f.Scopes,
			Audience: f.Audience, EndpointParams: f.EndpointParams, AuthStyle: f.AuthStyle,
			Timeout: f.Timeout.Std(), DefaultTTL: f.DefaultTTL.Std(),
		}
		auth, err := a.assertionAuth(f.ClientID, f.ClientAssertion)
		if err != nil {
			return out, fmt.Errorf("upstream.fetch: %w", err)
		}
		if auth != nil {
			cc.Auth, cc.ClientSecret, cc.AuthStyle = auth, "", ""
		}
		src, err := upstream.NewFetchSource(a.tokens, r.Name, cc, policy)
		if err != nil {
			return out, fmt.Errorf("upstream.fetch: %w", err)
		}
		out.Source = src
	case config.UpstreamExchanged:
		if exchange == nil {
			return out, errors.New("upstream exchanged needs client_credentials authentication at a token_url")
		}
		out.Upstream, out.Source = extauthz.UpstreamToken, upstream.NewExchangedSource(exchange)
	case config.UpstreamTokenExchange:
		te := r.Upstream.TokenExchange
		out.Upstream = extauthz.UpstreamToken
		auth, err := a.clientAuth(te.ClientID, te.ClientSecret, te.AuthStyle, te.ClientAssertion)
		if err != nil {
			return out, fmt.Errorf("upstream.token_exchange: %w", err)
		}
		src, err := upstream.NewTokenExchangeSource(a.tokens, r.Name, upstream.TokenExchange{
			TokenURL: te.TokenURL, ClientID: te.ClientID, Auth: auth,
			Audience: te.Audience, Resource: te.Resource, Scopes: te.Scopes,
			SubjectTokenType: te.SubjectTokenType, RequestedTokenType: te.RequestedTokenType, Timeout: te.Timeout.Std(),
		}, policy)
		if err != nil {
			return out, fmt.Errorf("upstream.token_exchange: %w", err)
		}
		out.Source = src
	case config.UpstreamPassthrough:
		out.Upstream = extauthz.UpstreamPassthrough
	default:
		out.Upstream = extauthz.UpstreamRemove
	}
	return out, nil
}

// newTokenCache builds the upstream-token cache, which lives as long as the process: a reload
// keeps every cached token (their keys name everything that selects them).
func (a *App) newTokenCache(cfg *config.Config) (*upstream.Cache, error) {
	opts := upstream.Options{
		Size: cfg.Cache.UpstreamTokens, HTTPClient: a.opts.HTTPClient, Logger: a.logger,
		Metrics: a.metrics, Now: a.opts.Now, // each route's source takes its generation's URL policy
	}
	if cfg.Cache.Redis != nil {
		store, err := a.newRedisStore(cfg.Cache.Redis)
		if err != nil {
			return nil, fmt.Errorf("cache.redis: %w", err)
		}
		a.store, opts.Store = store, store
	}
	return upstream.NewCache(opts), nil
}

// newRedisStore maps cache.redis onto the shared store. It contacts nothing: readiness never
// depends on Redis, and the store falls back to local fetches while Redis is away.
func (a *App) newRedisStore(r *config.Redis) (*redisstore.Store, error) {
	if len(r.EncryptionKey) == 0 {
		a.logger.Warn("cache.redis has no encryption_key_file: upstream tokens, which are bearer credentials, are stored in Redis in clear")
	}
	return redisstore.New(redisstore.Options{
		Addr: r.Addr, SentinelAddrs: r.SentinelAddrs, MasterName: r.MasterName, ClusterAddrs: r.ClusterAddrs,
		Username: r.Username, Password: r.Password.Value(), DB: r.DB,
		TLS: r.TLS.Enabled, CAPEM: r.TLS.CAData, ServerName: r.TLS.ServerName, // read once, by config
		KeyPrefix: r.KeyPrefix, EncryptionKey: r.EncryptionKey,
		Logger: a.logger, Metrics: a.metrics, Now: a.opts.Now,
	})
}

// Check builds what a configuration needs that validation alone cannot see, without touching
// the network: the issuer parses its signing keys (a file may look like PEM yet hold no usable
// key). `tokengate validate` calls it after config.Load.
func Check(cfg *config.Config) error {
	if cfg.Issuer == nil {
		return nil
	}
	ic := issuerConfig(cfg.Issuer)
	for i, cl := range cfg.Issuer.Clients {
		if cl.JWKS != nil || cl.JWKSURI != "" {
			ic.Clients[i].Keys = noKeys{} // config validated the inline set; a jwks_uri is not fetched here
		}
	}
	if _, err := issuer.New(ic, issuer.Options{Subjects: &lateVerifier{}}); err != nil {
		return err
	}
	return nil
}

// noKeys stands for a client's key set where validate builds the issuer without the network.
type noKeys struct{}

func (noKeys) Keys() *jose.KeySet                          { return nil }
func (noKeys) Lookup(context.Context, string) *jose.KeySet { return nil }
func (noKeys) Ready() <-chan struct{}                      { return nil }
func (noKeys) Close()                                      {}

// keepClaims are the claims the verifier keeps of a token: those routes read, and for the
// token-exchange grant `act` and `may_act` (RFC 8693 §4.1, §4.4) of subject tokens.
func keepClaims(cfg *config.Config) []string {
	names := routeClaims(cfg.Routes)
	if cfg.Issuer != nil && cfg.Issuer.TokenExchange != nil {
		names = append(names, "act", "may_act")
		slices.Sort(names)
		names = slices.Compact(names)
	}
	return names
}

// routeClaims are the claims some route reads from a verified token beyond the Principal's own
// fields: its required `claims` and its `forward_claims`. The verified-token cache keeps only
// these, so 100,000 cached tokens fit in tens of MiB (docs/performance.md). Non-nil: a
// configuration that reads no claim keeps none.
func routeClaims(routes []config.Route) []string {
	names := []string{}
	for _, r := range routes {
		if j := r.Authenticate.JWT; j != nil {
			for name := range j.Claims {
				names = append(names, name)
			}
		}
		for _, claim := range r.ForwardClaims {
			names = append(names, claim)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// clientKeys gives each private_key_jwt client (RFC 7523 §2.2) its key set: an inline `jwks`,
// or a `jwks_uri` fetched and refreshed like a provider's JWKS. The remote sources belong to st
// and are closed with it. A source of prev (the state being replaced, may be nil) built from the
// same client id, jwks_uri and allow_http_urls is taken over with its keys, as a provider's is:
// a reload neither refetches it nor loses its keys while the endpoint is failing.
func (a *App) clientKeys(ctx context.Context, cfg *config.Config, ic *issuer.Config, st, prev *state) error {
	st.clientKeys = make(map[clientKeyID]*jwks.Remote)
	for i, cl := range cfg.Issuer.Clients {
		switch {
		case cl.JWKS != nil:
			b, err := json.Marshal(map[string]any(cl.JWKS))
			if err != nil {
				return fmt.Errorf("client %s: jwks: %w", cl.ClientID, err)
			}
			src, _, err := jwks.NewStatic(b)
			if err != nil {
				return fmt.Errorf("client %s: jwks: %w", cl.ClientID, err)
			}
			ic.Clients[i].Keys = src
		case cl.JWKSURI != "":
			id := clientKeyID{clientID: cl.ClientID, jwksURI: cl.JWKSURI, allowHTTP: cfg.Server.AllowHTTPURLs}
			if prev != nil && prev.clientKeys[id] != nil {
				st.clientKeys[id] = prev.clientKeys[id]
				ic.Clients[i].Keys = prev.clientKeys[id]
				continue
			}
			src, err := jwks.NewRemote(ctx, jwks.Options{
				Name: "client:" + cl.ClientID, JWKSURI: cl.JWKSURI, HTTPClient: a.opts.HTTPClient,
				AllowHTTP: cfg.Server.AllowHTTPURLs, Logger: a.logger, Metrics: a.metrics, Now: a.opts.Now,
			})
			if err != nil {
				return fmt.Errorf("client %s: jwks_uri: %w", cl.ClientID, err)
			}
			st.clientKeys[id] = src
			ic.Clients[i].Keys = src
		}
	}
	return nil
}

// lateVerifier verifies token-exchange subject tokens with the verifier of the same
// configuration generation, which is built after the issuer.
type lateVerifier struct{ v *verify.Verifier }

func (l *lateVerifier) Verify(ctx context.Context, token string, providers []string) (*verify.Principal, error) {
	if l.v == nil {
		return nil, errors.New("token exchange: the verifier is not built yet")
	}
	return l.v.Verify(ctx, token, providers)
}

// clientAuth is how tokengate's client authenticates at an IdP endpoint: as ca configures, or
// else by its secret in the given style (client_secret_basic or client_secret_post).
func (a *App) clientAuth(clientID string, secret config.Secret, style string, ca config.ClientAssertion) (upstream.ClientAuth, error) {
	if auth, err := a.assertionAuth(clientID, ca); auth != nil || err != nil {
		return auth, err
	}
	return upstream.ClientSecretAuth{ClientID: clientID, Secret: secret.Value(), Style: style}, nil
}

// assertionAuth is the client authentication other than a secret configured by ca (RFC 7523
// assertions, RFC 8705 mutual TLS), nil when the client authenticates with a secret.
func (a *App) assertionAuth(clientID string, ca config.ClientAssertion) (upstream.ClientAuth, error) {
	switch {
	case ca.PrivateKey != nil && ca.PrivateKey.Key != nil:
		return upstream.PrivateKeyJWTAuth{ClientID: clientID, Key: ca.PrivateKey.Key, Audience: ca.AssertionAudience, Now: a.opts.Now}, nil
	case ca.AssertionPath != "":
		return upstream.ClientAssertionFileAuth{ClientID: clientID, File: ca.AssertionPath, Log: a.logger}, nil
	case ca.TLS != nil:
		return upstream.NewTLSClientAuth(clientID, ca.TLS.CertPath, ca.TLS.KeyPath, ca.TLS.CAPath)
	}
	return nil, nil
}
