package issuer

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/tokengate/tokengate/internal/verify"
)

// Grant types and token types of RFC 8693 §2.1, §3.
const (
	GrantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeAccessToken   = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
	grantClientCredentials = "client_credentials"
)

// SubjectVerifier verifies a subject token against the named providers, as the authorizer
// verifies a caller's token: *verify.Verifier satisfies it. The Principal's Claims must include
// `act` and `may_act` when the token has them (verify.Options.KeepClaims).
type SubjectVerifier interface {
	Verify(ctx context.Context, token string, providers []string) (*verify.Principal, error)
}

// exchangeRequest is the syntax of an RFC 8693 §2.1 request, judged before the client is
// authenticated.
type exchangeRequest struct {
	subjectToken string
	target       string // audience or resource; "" for the client's default
}

// parseExchange checks the token-exchange parameters that need no client: subject_token and its
// type (access_token or jwt: what a subject_providers JWT is), requested_token_type (only access
// tokens are issued), no actor_token (delegation here names the authenticated client as actor),
// and at most one target, since a token carries one audience (RFC 8693 §2.1 audience/resource).
func parseExchange(p map[string]string) (*exchangeRequest, *oauthError) {
	st, ok1 := p["subject_token"]
	stt, ok2 := p["subject_token_type"]
	switch {
	case !ok1 || !ok2:
		return nil, errNoSubject
	case stt != TokenTypeAccessToken && stt != TokenTypeJWT:
		return nil, errSubjectType
	}
	if rt, ok := p["requested_token_type"]; ok && rt != TokenTypeAccessToken {
		return nil, errRequestedType
	}
	_, a := p["actor_token"]
	_, at := p["actor_token_type"]
	if a || at {
		return nil, errActorToken
	}
	if _, many := p[repeatedResource]; many {
		return nil, errTarget
	}
	aud, hasAud := p["audience"]
	res, hasRes := p["resource"]
	target := aud
	switch {
	case hasAud && hasRes && aud != res:
		return nil, errTarget
	case !hasAud:
		target = res
	}
	return &exchangeRequest{subjectToken: st, target: target}, nil
}

// exchange answers an authenticated client's RFC 8693 request: the subject token verified by a
// subject provider, may_act honoured (§4.4), the target among the client's audiences (RFC 8707
// invalid_target), scopes narrowed to what both the client and the subject hold, exp no later
// than the subject's, and `act` naming the client, nesting the subject's own act (§4.1).
func (i *Issuer) exchange(w http.ResponseWriter, r *http.Request, c *client, x *exchangeRequest, requested string) {
	if !c.exchange || i.subjects == nil {
		writeError(w, errUnauthorized)
		return
	}
	subj, err := i.subjects.Verify(r.Context(), x.subjectToken, i.subjectProviders)
	if err != nil || subj == nil || subj.Subject == "" {
		i.log.Info("issuer: token exchange: subject token refused", "client_id", c.id, "error", errText(err))
		writeError(w, errSubject)
		return
	}
	// A sender-constrained subject (RFC 7800 §3.1 cnf: RFC 9449 jkt, RFC 8705 x5t#S256, or a
	// confirmation method tokengate does not know) is usable only with proof of possession of
	// its key; the token issued here is a bearer token, so exchanging it would strip the binding
	// (docs/security.md#bound-tokens). RFC 8693 §2.2.2: invalid_grant.
	if subj.Cnf != nil {
		i.log.Info("issuer: token exchange: sender-constrained subject token refused", "client_id", c.id,
			"subject_provider", subj.Provider, "subject_hash", subj.TokenHash)
		writeError(w, errBoundSubject)
		return
	}
	now := i.now()
	if !subj.Expiry.After(now) {
		writeError(w, errSubject)
		return
	}
	act, oe := i.actClaim(c, subj.Claims)
	if oe != nil {
		writeError(w, oe)
		return
	}
	aud := c.audiences[0]
	if x.target != "" {
		if !slices.Contains(c.audiences, x.target) {
			writeError(w, errTarget)
			return
		}
		aud = x.target
	}
	scopes, oe := exchangeScopes(c, subj.Scopes, requested)
	if oe != nil {
		writeError(w, oe)
		return
	}
	exp := now.Add(c.ttl)
	if subj.Expiry.Before(exp) {
		exp = subj.Expiry
	}
	extra := make(map[string]any, len(c.claims)+1)
	for k, v := range c.claims {
		extra[k] = v
	}
	extra["act"] = act
	token, expiry, err := i.sign(c.key, now, exp, subj.Subject, c.id, aud, scopes, extra)
	if err != nil {
		// exp truncated to seconds may no longer be after now: the subject expires this second.
		if exp.Unix() <= now.Unix() {
			writeError(w, errSubject)
			return
		}
		i.log.Error("issuer: signing failed", "client_id", c.id, "error", err)
		writeError(w, errServer)
		return
	}
	i.metrics.TokenIssued(c.id)
	i.log.Debug("issuer: token exchanged", "client_id", c.id, "aud", aud,
		"subject_provider", subj.Provider, "subject_hash", subj.TokenHash, "token_hash", TokenHash(token))
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken:     token,
		TokenType:       "Bearer",
		ExpiresIn:       expiry.Unix() - now.Unix(),
		Scope:           strings.Join(scopes, " "),
		IssuedTokenType: TokenTypeAccessToken,
	})
}

// actClaim builds the new token's act (RFC 8693 §4.1): the requesting client as the current
// actor, with the subject's own act, if any, nested as the prior actor. It first applies §4.4:
// a subject with may_act allows only the party it names.
func (i *Issuer) actClaim(c *client, claims map[string]any) (map[string]any, *oauthError) {
	if ma, ok := claims["may_act"]; ok {
		m, ok := ma.(map[string]any)
		if !ok {
			return nil, errMayAct
		}
		if sub, _ := m["sub"].(string); sub != c.id {
			return nil, errMayAct
		}
		// A may_act naming an issuer names a party of that issuer; our clients are ours.
		if iss, has := m["iss"]; has && iss != i.issuerURL {
			return nil, errMayAct
		}
	}
	act := map[string]any{"sub": c.id}
	if prior, ok := claims["act"]; ok {
		m, ok := prior.(map[string]any)
		if !ok {
			return nil, errSubject // RFC 8693 §4.1: act is a JSON object
		}
		act["act"] = m
	}
	return act, nil
}

// exchangeScopes narrows scope: a delegated token never carries a scope the subject does not
// hold nor one the client may not ask for. The client's rule is grantScopes' (RFC 6749 §3.3);
// then, with no scope asked, the client's default scopes that the subject holds, and with scopes
// asked, each must also be the subject's, else invalid_scope (RFC 6749 §5.2).
func exchangeScopes(c *client, subject []string, requested string) ([]string, *oauthError) {
	scopes, oe := grantScopes(c, requested)
	if oe != nil {
		return nil, oe
	}
	asked := strings.Trim(requested, " ") != ""
	var out []string
	for _, s := range scopes {
		switch {
		case slices.Contains(subject, s):
			out = append(out, s)
		case asked:
			return nil, errScope
		}
	}
	return out, nil
}

// isDelegationClaim names the RFC 8693 §4 claims the issuer sets or judges itself; a client's
// static claims may not carry them, or a client_credentials token could claim a delegation.
func isDelegationClaim(name string) bool {
	return name == "act" || name == "may_act"
}

func errText(err error) string {
	if err == nil {
		return "no subject"
	}
	return err.Error()
}
