package issuer

import (
	"crypto/sha256"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/tokengate/tokengate/internal/authlimit"
	"github.com/tokengate/tokengate/internal/jose"
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

// authenticateAssertion is private_key_jwt (RFC 7523 §2.2, §3): the client is named by the body's
// client_id or, without one, by the assertion's iss; behind the failure limiter like a secret
// (RFC 6749 §2.3.1), an unknown client, a client without keys and every failed check take the
// same path, count one failure and get the same invalid_client answer.
func (i *Issuer) authenticateAssertion(r *http.Request, cr credentials) (*client, *oauthError) {
	u, err := jose.Parse(cr.assertion, maxAssertionBytes)
	id := cr.id
	if id == "" && err == nil {
		id = u.Issuer()
	}
	if id == "" {
		return nil, errClient
	}
	ip := authlimit.ClientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), i.trusted)
	if wait, ok := i.limit.Allow(id, ip); !ok {
		i.log.Debug("issuer: client authentication refused: too many failures",
			"client_id", logSafe(id), "remote", ip.String())
		return nil, errSlowDown(wait)
	}
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
		i.limit.Fail(id, ip)
		i.log.Info("issuer: client authentication failed", "client_id", logSafe(id),
			"method", "private_key_jwt", "reason", reason, "remote", ip.String())
		return nil, errClient
	}
	return c, nil
}

// checkAssertion applies RFC 7523 §3 to an assertion of client c and returns why it is refused,
// or "" when it is accepted (its jti is then remembered until its exp).
func (i *Issuer) checkAssertion(r *http.Request, c *client, u *jose.Unverified) string {
	// Item 9: signed by a key of the client's own set; a remote set refreshes (rate-limited) on
	// an unknown kid, as a provider's JWKS does.
	ks := c.keys.Lookup(r.Context(), u.KeyID())
	if ks == nil {
		return "client keys not loaded"
	}
	claims, err := u.Verify(ks, jose.VerificationAlgorithms())
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
	switch i.replay.seen(c.id, claims.ID, now, claims.Expiry) {
	case replaySeen:
		return "jti replayed"
	case replayFull:
		return "replay cache full"
	}
	return ""
}

// defaultReplaySize holds the jtis of 100,000 live assertions: about 330 client authentications
// a second, each remembered for the longest lifetime MaxAssertionLifetime allows.
const defaultReplaySize = 100_000

type replayAnswer int

const (
	replayNew replayAnswer = iota
	replaySeen
	replayFull
)

// assertionReplay remembers accepted assertion jtis per client until their exp (RFC 7523 §3 item
// 7), keyed by SHA-256 of client id and jti. It is bounded and fails closed: when full of
// unexpired entries a new assertion is refused rather than an entry forgotten early, since a
// forgotten jti could be replayed. Entries leave in insertion order, and every exp is at most
// MaxAssertionLifetime ahead, so the oldest entry is the first (or nearly) to expire.
type assertionReplay struct {
	mu   sync.Mutex
	lru  *simplelru.LRU[[sha256.Size]byte, time.Time]
	size int
}

func newAssertionReplay(size int) *assertionReplay {
	if size <= 0 {
		size = defaultReplaySize
	}
	l, err := simplelru.NewLRU[[sha256.Size]byte, time.Time](size, nil)
	if err != nil { // only for size <= 0
		panic(err)
	}
	return &assertionReplay{lru: l, size: size}
}

// seen records (clientID, jti) until exp unless it is already recorded and unexpired, in one
// step, so two concurrent requests with one assertion never both pass.
func (c *assertionReplay) seen(clientID, jti string, now, exp time.Time) replayAnswer {
	h := sha256.New()
	h.Write([]byte(clientID))
	h.Write([]byte{0})
	h.Write([]byte(jti))
	var key [sha256.Size]byte
	h.Sum(key[:0])
	c.mu.Lock()
	defer c.mu.Unlock()
	if until, ok := c.lru.Peek(key); ok && now.Before(until) {
		return replaySeen
	}
	for c.lru.Len() >= c.size {
		_, until, _ := c.lru.GetOldest()
		if now.Before(until) {
			return replayFull
		}
		c.lru.RemoveOldest()
	}
	c.lru.Add(key, exp)
	return replayNew
}
