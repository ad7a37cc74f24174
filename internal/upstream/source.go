package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"time"

	"github.com/tokengate/tokengate/issuer"
)

// Source is the credential one route sends upstream, in the manner of x/oauth2's TokenSource:
// the application builds one per route from the configuration, and the authorizer asks it for
// a token for each allowed request, knowing nothing of how the token is obtained or cached.
//
// Token must be safe for concurrent use by any number of goroutines. Every implementation in
// this package answers from the Cache: concurrent calls that need the same token (the same
// cache key, which this package alone builds) share one acquisition, an IdP call or a signature,
// run detached from the callers, and each caller waits at most the route's timeout or its ctx.
// Errors are *Error and match ErrUnavailable (503) and/or ErrRejected (the caller's own
// credentials were refused: 401 invalid_client) as documented there. A new upstream mode is a
// new Source type; the authorizer does not change.
type Source interface {
	Token(ctx context.Context, c Caller) (Token, error)
}

// Caller is who the route authenticated, in the terms the sources need. The zero Caller is an
// anonymous one (authenticate: none).
type Caller struct {
	// Subject and ClientID name the caller: a verified JWT's sub and client_id (or azp); both
	// are the client id of a client_credentials caller.
	Subject, ClientID string
	// Expiry is the exp of the caller's own token, zero when it has none: a minted token never
	// outlives it.
	Expiry time.Time
	// Bearer is the caller's verified Bearer token, "" for a client_credentials caller. A
	// source keys its cache on the token's SHA-256 (two callers never share a minted token) and
	// never logs it or sends it anywhere.
	Bearer string
	// BearerSum is the SHA-256 of Bearer when the authenticator already computed it (the
	// verified-token cache's key), so that a mint route does not hash the token a second time
	// per request; zero when it did not (the source hashes Bearer itself).
	BearerSum [sha256.Size]byte
	// ClientSecret is a client_credentials caller's secret, exchanged with ClientID at the
	// route's token_url (ExchangeSource). Never logged; the cache key holds only its SHA-256.
	ClientSecret string
	// Verified is the token the IdP issued for the caller's credentials when the route verified
	// them with its ExchangeSource, zero otherwise. ExchangedSource passes it on.
	Verified Token
}

// FetchSource is mode "fetch": a token for tokengate's own client credentials (RFC 6749 §4.4),
// the same for every caller of the route, shared through the Store when there is one.
type FetchSource struct {
	cache *Cache
	route string
	cc    ClientCredentials
	key   Key // computed once: the hot path hashes nothing
}

// SourceOption adjusts a source built by NewFetchSource, NewExchangeSource or
// NewTokenExchangeSource.
type SourceOption func(*sourceOptions)

type sourceOptions struct{ allowHTTP bool }

// AllowHTTP sets the token URL policy of the configuration the source belongs to
// (server.allow_http_urls: http:// for non-loopback hosts); without it a source allows https,
// and http to loopback hosts only. The policy is the source's alone, never the Cache's: the
// Cache outlives configurations while a reload may change the flag
// (docs/configuration.md#server).
func AllowHTTP(allow bool) SourceOption {
	return func(o *sourceOptions) { o.allowHTTP = allow }
}

func (c *Cache) sourceOptions(opts []SourceOption) sourceOptions {
	var o sourceOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// NewFetchSource returns route's fetch source, or what is wrong with cc (the URL policy and
// the request settings are checked here, once, not per token request). cc must not be
// modified after.
func NewFetchSource(c *Cache, route string, cc ClientCredentials, opts ...SourceOption) (*FetchSource, error) {
	if err := cc.Validate(c.sourceOptions(opts).allowHTTP); err != nil {
		return nil, err
	}
	return &FetchSource{cache: c, route: route, cc: cc, key: CredentialsKey(ModeFetch, cc)}, nil
}

// Token returns the route's token; the caller does not select it.
func (s *FetchSource) Token(ctx context.Context, _ Caller) (Token, error) {
	return s.cache.byCredentials(ctx, s.route, ModeFetch, s.cc, s.key)
}

// Key is the source's cache key.
func (s *FetchSource) Key() Key { return s.key }

// ExchangeSource is mode "exchange": the token the IdP at the route's token_url issues for the
// caller's own client credentials (Caller.ClientID and ClientSecret; RFC 6749 §4.4). It is how
// a client_credentials route verifies its caller: an error matching ErrRejected but not
// ErrUnavailable means the IdP refused the credentials. See Cache.Exchange for the negative
// cache and the bound of MaxVerificationsPerRoute exchanges of one route in flight.
type ExchangeSource struct {
	cache *Cache
	route string
	cc    ClientCredentials // without ClientID and ClientSecret: they are the caller's
}

// NewExchangeSource returns route's exchange source, or what is wrong with cc (checked once
// here); cc's ClientID and ClientSecret are ignored, and an Auth is refused: the caller's own
// credentials are what the IdP judges.
func NewExchangeSource(c *Cache, route string, cc ClientCredentials, opts ...SourceOption) (*ExchangeSource, error) {
	cc.ClientID, cc.ClientSecret = "", ""
	if err := cc.validate(c.sourceOptions(opts).allowHTTP, false); err != nil {
		return nil, err
	}
	return &ExchangeSource{cache: c, route: route, cc: cc}, nil
}

// Token exchanges the caller's credentials.
func (s *ExchangeSource) Token(ctx context.Context, c Caller) (Token, error) {
	cc := s.cc
	cc.ClientID, cc.ClientSecret = c.ClientID, c.ClientSecret
	return s.cache.exchange(ctx, s.route, cc)
}

// ExchangedSource is the upstream of an `exchanged` route: the token the route's ExchangeSource
// obtained for the caller's credentials when it verified them (Caller.Verified), so the IdP is
// asked once per caller, not twice. A caller that carries none is exchanged here.
type ExchangedSource struct {
	verifier *ExchangeSource
}

// NewExchangedSource returns the upstream source of a route verified by verifier.
func NewExchangedSource(verifier *ExchangeSource) *ExchangedSource {
	return &ExchangedSource{verifier: verifier}
}

// Token returns c.Verified, or exchanges the caller's credentials when it is empty.
func (s *ExchangedSource) Token(ctx context.Context, c Caller) (Token, error) {
	if c.Verified.AccessToken != "" {
		return c.Verified, nil
	}
	return s.verifier.Token(ctx, c)
}

// Signer signs the tokens of mint routes: the built-in issuer (*issuer.Issuer).
type Signer interface {
	Mint(ctx context.Context, r issuer.MintRequest) (token string, expiry time.Time, err error)
	// PublicJWKS is the published key set. A MintSource keys its tokens on it, so that a token
	// signed by a key that is no longer published is never served after a reload.
	PublicJWKS() []byte
}

// MintSource is mode "mint": a token tokengate's own issuer signs for the route's upstream,
// for the caller (sub, client_id, exp capped by the caller's own; RFC 9068 §2.2). Minting is
// in-process: a cache miss waits at most defaults.UpstreamTimeout for the signature. Minted tokens are
// never shared through the Store.
type MintSource struct {
	cache  *Cache
	route  string
	signer Signer
	tmpl   issuer.MintRequest // Audience, Scopes, TTL, Claims; the rest is the caller's
	// prefix is the SHA-256 of the start of every key of this source: the route, the published
	// keys and the whole template, so that a reload that changes any of them never serves an
	// older token. It is hashed once here; a request hashes only it and the caller (issue 11).
	prefix [sha256.Size]byte
}

// NewMintSource returns route's mint source. tmpl gives the token's Audience, Scopes, TTL and
// Claims; its Subject, ClientID and NotAfter are set from each caller. The source belongs to one
// configuration (the signer's published keys are read once): build a new one on reload.
func NewMintSource(c *Cache, route string, s Signer, tmpl issuer.MintRequest) *MintSource {
	tmpl.Subject, tmpl.ClientID, tmpl.NotAfter = "", "", time.Time{}
	jwks := sha256.Sum256(s.PublicJWKS())
	claims, _ := json.Marshal(tmpl.Claims) // map keys sorted; an unencodable map fails to sign anyway
	var b []byte
	b = appendField(b, keyVersion)
	b = appendField(b, ModeMint)
	b = appendField(b, route)
	b = appendField(b, string(jwks[:]))
	b = appendField(b, tmpl.Audience)
	b = appendCount(b, len(tmpl.Scopes)) // in order: the order is the token's scope claim
	for _, sc := range tmpl.Scopes {
		b = appendField(b, sc)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(tmpl.TTL))
	b = appendField(b, string(claims))
	return &MintSource{cache: c, route: route, signer: s, tmpl: tmpl, prefix: sha256.Sum256(b)}
}

// Token returns the token minted for c, signing one on a miss.
func (s *MintSource) Token(ctx context.Context, c Caller) (Token, error) {
	key := s.key(c)
	if tok, ok := s.cache.fresh(key); ok {
		return tok, nil
	}
	return s.sign(ctx, c, key)
}

// sign is Token's miss path, apart so that the request it builds is not in the frame of every
// cached Check (a deeper stack costs each Check's new goroutine a copy; issue 11).
//
//go:noinline
func (s *MintSource) sign(ctx context.Context, c Caller, key Key) (Token, error) {
	r := s.tmpl
	r.Subject, r.ClientID, r.NotAfter = c.Subject, c.ClientID, c.Expiry
	if r.Subject == "" { // RFC 9068 §2.2 requires sub; a client's token may lack one
		r.Subject = c.ClientID
	}
	return s.cache.mint(ctx, s.route, key, func(ctx context.Context) (Token, error) {
		tok, exp, err := s.signer.Mint(ctx, r)
		return Token{AccessToken: tok, Expiry: exp}, err
	})
}

// key is the cache key of c's token: a caller with a Bearer token is keyed on its full
// SHA-256 (everything minted for it, sub, client_id and the exp cap, comes from that token),
// a client_credentials caller on its client id.
func (s *MintSource) key(c Caller) Key {
	var stack [128]byte
	b := appendField(stack[:0], string(s.prefix[:]))
	if c.Bearer != "" {
		sum := c.BearerSum
		if sum == ([sha256.Size]byte{}) {
			sum = sha256.Sum256([]byte(c.Bearer))
		}
		b = appendField(b, "bearer")
		b = appendField(b, string(sum[:]))
	} else {
		b = appendField(b, "client")
		b = appendField(b, c.ClientID)
	}
	sum := sha256.Sum256(b)
	return Key(sum[:])
}
