package issuer

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
)

// TokenType is the JWS `typ` of every access token (RFC 9068 §2.1).
const TokenType = "at+jwt"

// tokenResponse is the RFC 6749 §5.1 success answer. No refresh token (§4.4.3).
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
	// IssuedTokenType answers a token exchange (RFC 8693 §2.2.1).
	IssuedTokenType string `json:"issued_token_type,omitempty"`
}

// serveToken is POST /oauth2/token: the client-credentials grant (RFC 6749 §4.4). The request is
// judged in this order, so that only a well-formed request reaches the secret comparison:
// method, URL, body size and syntax, client-authentication syntax, grant_type, then client
// authentication (behind the limiter), then scope and audience, which depend on the client.
func (i *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	p, cr, oe := readClientRequest(w, r, tokenParams)
	if oe != nil {
		writeError(w, oe)
		return
	}
	var x *exchangeRequest
	switch gt, ok := p["grant_type"]; {
	case !ok:
		writeError(w, errNoGrantType)
		return
	case gt == GrantTokenExchange:
		if x, oe = parseExchange(p); oe != nil {
			writeError(w, oe)
			return
		}
	case gt != grantClientCredentials:
		writeError(w, errGrantType)
		return
	}
	c, oe := i.authenticate(r, cr)
	if oe != nil {
		writeError(w, oe)
		return
	}
	if x != nil {
		i.exchange(w, r, c, x, p["scope"])
		return
	}
	scopes, oe := grantScopes(c, p["scope"])
	if oe != nil {
		writeError(w, oe)
		return
	}
	aud := c.audiences[0]
	if a, ok := p["audience"]; ok {
		if !slices.Contains(c.audiences, a) {
			writeError(w, errTarget)
			return
		}
		aud = a
	}
	now := i.now()
	token, exp, err := i.sign(c.key, now, now.Add(c.ttl), c.id, c.id, aud, scopes, c.claims)
	if err != nil {
		i.log.Error("issuer: signing failed", "client_id", c.id, "error", err)
		writeError(w, errServer)
		return
	}
	// c is a registered client that just authenticated: the label value comes from the configuration,
	// never from the request (docs/security.md#the-security-rules), so series are bounded by clients.
	i.metrics.TokenIssued(c.id)
	i.log.Debug("issuer: token issued", "client_id", c.id, "aud", aud, "token_hash", TokenHash(token))
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: token,
		TokenType:   "Bearer",
		ExpiresIn:   exp.Unix() - now.Unix(),
		Scope:       strings.Join(scopes, " "),
	})
}

// grantScopes applies RFC 6749 §3.3: the requested scope is a space-delimited list whose every
// token must be allowed for the client (invalid_scope otherwise); no scope asked means the
// client's default scopes. Repeats are granted once.
func grantScopes(c *client, requested string) ([]string, *oauthError) {
	if requested == "" {
		return c.defaultScopes, nil
	}
	var out []string
	for s := range strings.SplitSeq(requested, " ") {
		if s == "" {
			continue // tolerate doubled separators
		}
		if !validScopeToken(s) || !slices.Contains(c.scopes, s) {
			return nil, errScope
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return c.defaultScopes, nil
	}
	return out, nil
}

// validScopeToken is RFC 6749 §3.3 scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for k := 0; k < len(s); k++ {
		b := s[k]
		if b < 0x21 || b > 0x7e || b == '"' || b == '\\' {
			return false
		}
	}
	return true
}

// sign builds and signs one RFC 9068 access token. extra claims never replace the registered
// ones. exp is truncated to whole seconds (NumericDate) and must be after now.
func (i *Issuer) sign(key *jose.SigningKey, now, exp time.Time, sub, clientID, aud string, scopes []string, extra map[string]any) (string, time.Time, error) {
	expSec, nowSec := exp.Unix(), now.Unix()
	if expSec <= nowSec {
		return "", time.Time{}, errors.New("issuer: token would already be expired")
	}
	jti, err := i.newJTI()
	if err != nil {
		return "", time.Time{}, err
	}
	claims := make(map[string]any, len(extra)+9)
	maps.Copy(claims, extra)
	for _, name := range jose.ReservedClaims() {
		delete(claims, name)
	}
	claims["iss"] = i.issuerURL
	claims["sub"] = sub
	claims["aud"] = aud
	claims["exp"] = expSec
	claims["iat"] = nowSec
	claims["jti"] = jti
	if clientID != "" {
		claims["client_id"] = clientID
	}
	if len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
	}
	token, err := key.Sign(claims, TokenType)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issuer: signing: %w", err)
	}
	return token, time.Unix(expSec, 0), nil
}

// newJTI is a random 128-bit token identifier (RFC 9068 §2.2, RFC 7519 §4.1.7).
func (i *Issuer) newJTI() (string, error) {
	var b [16]byte
	if _, err := i.random(b[:]); err != nil {
		return "", fmt.Errorf("issuer: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// TokenHash is what logs show instead of a token: the first 16 hex digits of its SHA-256.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:8])
}

// MintRequest asks Mint for one access token for a `mint` route (RFC 9068;
// docs/issuer.md#minting-for-mint-routes).
type MintRequest struct {
	Subject  string // `sub`: the caller's sub (required)
	ClientID string // `client_id`: the caller's client_id or azp; omitted when empty
	Audience string // `aud`: the route's audience (required)
	Scopes   []string
	// TTL is the wanted lifetime (the issuer's token_ttl when zero); NotAfter, when set, caps
	// exp (the caller token's own exp).
	TTL      time.Duration
	NotAfter time.Time
	// Claims are extra claims; registered claims (iss, sub, aud, exp, iat, jti, client_id,
	// scope, nbf) are always the issuer's and are never replaced by these.
	Claims map[string]any
}

// Mint signs an access token for a `mint` route with the active key: exp = min(now+TTL,
// NotAfter), truncated to whole seconds, and an error when that is not in the future. It returns
// the token and its expiry. The caller (upstream.MintSource) caches minted tokens under a hash of
// the published key set, so a token signed by a key no longer published is never served, and
// needs no kid. Mint does not count in tokengate_tokens_issued_total, which counts the token
// endpoint's answers per client; mint routes are counted by the upstream-token metric.
func (i *Issuer) Mint(ctx context.Context, r MintRequest) (token string, expiry time.Time, err error) {
	if err := ctx.Err(); err != nil {
		return "", time.Time{}, err
	}
	if r.Subject == "" {
		return "", time.Time{}, errors.New("issuer: mint: subject required")
	}
	if r.Audience == "" {
		return "", time.Time{}, errors.New("issuer: mint: audience required")
	}
	if r.TTL < 0 {
		return "", time.Time{}, errors.New("issuer: mint: negative ttl")
	}
	for _, s := range r.Scopes {
		if !validScopeToken(s) {
			return "", time.Time{}, errors.New("issuer: mint: a scope is not an RFC 6749 §3.3 scope token")
		}
	}
	ttl := r.TTL
	if ttl == 0 {
		ttl = i.ttl
	}
	now := i.now()
	exp := now.Add(ttl)
	if !r.NotAfter.IsZero() && r.NotAfter.Before(exp) {
		exp = r.NotAfter
	}
	return i.sign(i.keys[0], now, exp, r.Subject, r.ClientID, r.Audience, dedupe(r.Scopes), r.Claims)
}

// freezeClaims deep-copies static claims through JSON, so that they are plain JSON values that
// nobody else holds a reference to (numbers as json.Number, kept exact).
func freezeClaims(in map[string]any) (map[string]any, error) {
	if len(in) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("not representable as JSON: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var out map[string]any
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("not representable as JSON: %w", err)
	}
	return out, nil
}
