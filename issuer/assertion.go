package issuer

import (
	"net/http"
	"slices"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/replay"
)

// ClientAssertionType is the client_assertion_type of private_key_jwt (RFC 7523 §2.2).
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// MaxAssertionLifetime bounds how far ahead an assertion's exp may be: RFC 7523 §3 item 4 lets
// the server refuse an exp too far in the future, and the bound is also how long a jti must be
// remembered (item 7), which sizes the replay cache.
const MaxAssertionLifetime = 5 * time.Minute

// assertionSkew tolerates a client clock slightly ahead of ours for exp's upper bound and nbf
// (RFC 7523 §3 items 4 and 5: "a reasonable leeway"). exp itself must still be in the future.
const assertionSkew = 30 * time.Second

// maxAssertionBytes bounds an assertion before it is parsed.
const maxAssertionBytes = 16 << 10

// assertionAlgorithms are the JWS algorithms a client assertion may be signed with: every
// asymmetric algorithm jose verifies (never HMAC or none, RFC 8725 §3.1). The metadata
// advertises the same list (RFC 8414 §2 token_endpoint_auth_signing_alg_values_supported).
func assertionAlgorithms() []string { return jose.VerificationAlgorithms() }

// authenticateAssertion is private_key_jwt (RFC 7523 §2.2, §3): the client is named by the body's
// client_id or, without one, by the assertion's iss; behind the failure limiter like a secret
// (RFC 6749 §2.3.1), an unknown client, a client without keys and every failed check take the
// same path, count one failure and get the same invalid_client answer. A client whose remote keys
// are not loaded is answered the same, but not counted: that is our outage, not its failure.
func (i *Issuer) authenticateAssertion(r *http.Request, cr credentials) (*client, *oauthError) {
	u, err := jose.Parse(cr.assertion, maxAssertionBytes)
	id := cr.id
	if id == "" && err == nil {
		id = u.Issuer()
	}
	if id == "" {
		return nil, errClient
	}
	return i.behindLimiter(r, id, "private_key_jwt", func() (*client, string, bool) {
		c := i.clients[id]
		reason := ""
		switch {
		case err != nil:
			reason = "malformed assertion"
		case c == nil:
			reason = "unknown client"
		case c.keys == nil:
			reason = "client has no keys"
		default:
			reason = i.checkAssertion(r, c, u)
		}
		if reason != "" {
			// Keys not loaded is our outage (the client's jwks_uri unreachable, or not fetched
			// yet after a reload), not the client's failure: refused, since nothing can check
			// the assertion, but not counted, or a legitimate client would be locked out with
			// 429 by our own outage (docs/issuer.md#failure-limiter). Nobody can cause it with a
			// guess: the client exists and its keys are remote. A full replay record is ours
			// too (during a Redis outage), and only a correctly signed assertion reaches it.
			return nil, reason, reason == reasonKeysNotLoaded || reason == reasonReplayFull
		}
		return c, "", false
	})
}

// checkAssertion's refusals that are not the client's failure: its key set has never loaded, or
// the replay record is full of live identifiers (replay.ErrFull).
const (
	reasonKeysNotLoaded = "client keys not loaded"
	reasonReplayFull    = "replay cache full"
)

// checkAssertion applies RFC 7523 §3 to an assertion of client c and returns why it is refused,
// or "" when it is accepted (its jti is then remembered until its exp).
func (i *Issuer) checkAssertion(r *http.Request, c *client, u *jose.Unverified) string {
	// Item 9: signed by a key of the client's own set; a remote set refreshes (rate-limited) on
	// an unknown kid, as a provider's JWKS does.
	ks := c.keys.Lookup(r.Context(), u.KeyID())
	if ks == nil {
		return reasonKeysNotLoaded
	}
	claims, err := u.Verify(ks, assertionAlgorithms())
	if err != nil {
		return "signature: " + err.Error()
	}
	now := i.now()
	switch {
	// Items 1 and 2: iss and sub are the client_id (§2.2).
	case claims.Issuer != c.id || claims.Subject != c.id:
		return "iss and sub must be the client_id"
	// Item 3: the audience identifies this server: its issuer URL or its token endpoint.
	case !slices.Contains(claims.Audience, i.issuerURL) && !slices.Contains(claims.Audience, i.base+PathToken):
		return "aud is neither the issuer nor the token endpoint"
	// Item 4: exp required, in the future, and not too far ahead.
	case !jose.ValidTime(claims.HasExpiry, claims.Expiry) || !claims.Expiry.After(now):
		return "expired or no exp"
	case claims.Expiry.After(now.Add(MaxAssertionLifetime + assertionSkew)):
		return "exp too far in the future"
	// Item 5: nbf, when present, not in the future.
	case claims.HasNotBefore && claims.NotBefore.After(now.Add(assertionSkew)):
		return "not yet valid"
	// Item 7: a jti, never accepted twice before its exp.
	case claims.ID == "":
		return "no jti"
	}
	switch seen, err := i.replay.Seen(r.Context(), replay.Key(c.id, claims.ID), now, claims.Expiry); {
	case err != nil:
		return reasonReplayFull
	case seen:
		return "jti replayed"
	}
	return ""
}
