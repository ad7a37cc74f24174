package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/tokengate/tokengate/internal/introspect"
)

// Descriptions of introspection outcomes (see errors.go for the rules they follow).
const (
	DescInactive              = "token is not active"
	DescIntrospectUnavailable = "token introspection is not available"
)

// newIntrospectionProvider checks an opaque-token provider (RFC 7662). Its Issuer, when set, is
// compared with an answer's iss; its Audiences, when listed, with an answer's aud.
func newIntrospectionProvider(cfg Provider) (*provider, error) {
	if cfg.JWKSURI != "" || cfg.Discovery || cfg.StaticJWKS != nil {
		return nil, fmt.Errorf("verify: provider %s: introspection excludes jwks_uri, discovery and static keys", cfg.Name)
	}
	if cfg.ClockSkew < 0 {
		return nil, fmt.Errorf("verify: provider %s: negative duration", cfg.Name)
	}
	aud := make(map[string]bool, len(cfg.Audiences))
	for _, a := range cfg.Audiences {
		if a == "" {
			return nil, fmt.Errorf("verify: provider %s: empty audience", cfg.Name)
		}
		aud[a] = true
	}
	return &provider{cfg: cfg, audiences: aud, intro: cfg.Introspection}, nil
}

// introspects reports whether one of the named providers is an introspection provider.
func (v *Verifier) introspects(providers []string) bool {
	for _, name := range providers {
		if p := v.providers[name]; p != nil && p.intro != nil {
			return true
		}
	}
	return false
}

// introspect judges a token that is not a JWT of the route's JWT providers by the route's
// introspection providers, in the route's order: the first active answer that passes the
// provider's checks wins. Inactive or refused answers are 401 invalid_token; a provider that
// gives no usable answer makes the result 503 unless another provider accepts the token.
func (v *Verifier) introspect(ctx context.Context, token string, sum [sha256.Size]byte, providers []string, now time.Time) (*Principal, error) {
	var first *Error
	unavailable := false
	for _, name := range providers {
		p := v.providers[name]
		if p == nil || p.intro == nil {
			continue
		}
		ans, err := p.intro.Introspect(ctx, token, sum)
		if err != nil {
			unavailable = true
			v.log.Warn("introspection failed", "provider", p.cfg.Name, "error", err)
			continue
		}
		if e := checkAnswer(p, ans, now); e != nil {
			if first == nil {
				first = e
			}
			continue
		}
		return v.answerPrincipal(p, ans, sum), nil
	}
	if unavailable {
		return nil, &Error{Kind: KindUnavailable, Description: DescIntrospectUnavailable, Err: introspect.ErrUnavailable}
	}
	if first == nil {
		first = invalid(DescInvalid, nil)
	}
	return nil, first
}

// checkAnswer applies RFC 7662 §2.2 and our provider's rules to an answer: active; exp, when
// present, not past (within the skew); nbf not in the future; iss equal to the provider's
// issuer when both are present; aud containing one of the provider's audiences when both are.
func checkAnswer(p *provider, ans *introspect.Answer, now time.Time) *Error {
	if !ans.Active {
		return invalid(DescInactive, nil)
	}
	skew := p.cfg.ClockSkew
	if !ans.Expiry.IsZero() && !now.Before(ans.Expiry.Add(skew)) {
		return invalid(DescExpired, nil)
	}
	if nbf, ok := ans.Claims["nbf"]; ok {
		t, ok := numericDate(nbf)
		if !ok || t.After(now.Add(skew)) {
			return invalid(DescNotYetValid, nil)
		}
	}
	if iss, ok := ans.Claims["iss"]; ok && p.cfg.Issuer != "" {
		if s, _ := iss.(string); s != p.cfg.Issuer {
			return invalid(DescIssuer, nil)
		}
	}
	if aud, ok := ans.Claims["aud"]; ok && len(p.audiences) > 0 {
		// RFC 7662 §2.2: aud as RFC 7519 §4.1.3, a string or an array of strings.
		var list []string
		switch a := aud.(type) {
		case string:
			list = []string{a}
		case []any:
			for _, e := range a {
				if s, ok := e.(string); ok {
					list = append(list, s)
				}
			}
		}
		if !slices.ContainsFunc(list, func(a string) bool { return p.audiences[a] }) {
			return invalid(DescAudience, nil)
		}
	}
	return nil
}

// numericDate reads a NumericDate member of an answer (json.Number, RFC 7519 §2).
func numericDate(v any) (time.Time, bool) {
	n, ok := v.(interface{ Float64() (float64, error) })
	if !ok {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil || f <= 0 || f > 1<<40 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// answerPrincipal builds the caller of an active answer: its sub, client_id, scope (the same
// rule as a JWT's, RFC 7662 §2.2), exp, iat and jti, and its members as claims, kept as
// Options.KeepClaims says. The answer is shared with the introspection cache: nothing in it is
// modified, and kept claims are copies.
func (v *Verifier) answerPrincipal(p *provider, ans *introspect.Answer, sum [sha256.Size]byte) *Principal {
	str := func(name string) string { s, _ := ans.Claims[name].(string); return s }
	var hash [16]byte
	hex.Encode(hash[:], sum[:8])
	pr := &Principal{
		Provider: p.cfg.Name,
		Issuer:   str("iss"),
		Subject:  str("sub"),
		ClientID: str("client_id"),
		Expiry:   ans.Expiry,
		ID:       str("jti"),
		// The opaque token is the upstream credential of a passthrough route, and the key of a
		// mint route's cache, exactly as a JWT's.
		TokenSum:  sum,
		TokenHash: string(hash[:]),
	}
	pr.setScopes(v.scopes.get(ClaimScopes(ans.Claims)))
	if pr.Issuer == "" {
		pr.Issuer = p.cfg.Issuer
	}
	if iat, ok := ans.Claims["iat"]; ok {
		if t, ok := numericDate(iat); ok {
			pr.IssuedAt = t
		}
	}
	// RFC 7662 §2.2 lets an answer carry any JWT claim: a token bound by cnf (RFC 8705 §3.2
	// for certificates, RFC 9449 §6.2 for DPoP keys) is bound whether it is a JWT or opaque,
	// so the binding is read as from a JWT, whatever KeepClaims says.
	if cnf, ok := ans.Claims["cnf"]; ok {
		pr.Cnf = confirmation(cnf)
	}
	pr.Claims = v.keptClaims(ans.Claims)
	return pr
}
