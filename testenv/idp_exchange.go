package testenv

import (
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
)

// RFC 8693 identifiers the fake IdP's token-exchange grant understands.
const (
	tokenExchangeGrant = "urn:ietf:params:oauth:grant-type:token-exchange"
	accessTokenType    = "urn:ietf:params:oauth:token-type:access_token"
)

// ExchangeMode switches how the IdP answers token-exchange requests.
type ExchangeMode int

// Token-exchange behaviours.
const (
	ExchangeOK     ExchangeMode = iota // verify the subject token and exchange it
	ExchangeRefuse                     // 400 with the code given to SetExchange (invalid_target, ...)
	Exchange500                        // 500
	ExchangeHang                       // no answer until the client gives up
)

// exchange is the state of the RFC 8693 grant (idp_exchange.go).
type exchange struct {
	Requests atomic.Int64
	mu       sync.Mutex
	mode     ExchangeMode
	code     string
	last     url.Values
	lastUser string // the client that authenticated
}

// SetExchange switches the token-exchange behaviour; code is the error of ExchangeRefuse.
func (p *IdP) SetExchange(m ExchangeMode, code string) {
	p.exch.mu.Lock()
	p.exch.mode, p.exch.code = m, code
	p.exch.mu.Unlock()
}

// ExchangeRequests counts the token-exchange requests the IdP received.
func (p *IdP) ExchangeRequests() int64 { return p.exch.Requests.Load() }

// LastExchange returns the form of the last token-exchange request and the client that
// authenticated it, so tests can assert each parameter.
func (p *IdP) LastExchange() (url.Values, string) {
	p.exch.mu.Lock()
	defer p.exch.mu.Unlock()
	return p.exch.last, p.exch.lastUser
}

// ExchangedToken is the token the IdP issues for a subject: its sub and the audience asked for,
// readable by the echo upstream's tests.
func ExchangedToken(sub, audience string, seq int) string {
	return fmt.Sprintf("exchanged-%s-for-%s-%d", url.QueryEscape(sub), url.QueryEscape(audience), seq)
}

// tokenExchange answers RFC 8693 §2.1 for an authenticated client, as a real IdP does: the
// subject_token must be an unexpired JWT this IdP signed, of subject_token_type access_token
// (RFC 8693 §2.2.2: else invalid_request / invalid_grant).
func (p *IdP) tokenExchange(w http.ResponseWriter, r *http.Request, client string, seq int, ttl time.Duration) {
	p.exch.Requests.Add(1)
	p.exch.mu.Lock()
	p.exch.last, p.exch.lastUser = r.PostForm, client
	mode, code := p.exch.mode, p.exch.code
	p.exch.mu.Unlock()
	switch mode {
	case ExchangeRefuse:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": code})
		return
	case Exchange500:
		http.Error(w, "down", http.StatusInternalServerError)
		return
	case ExchangeHang:
		<-r.Context().Done()
		return
	}
	f := r.PostForm
	if f.Get("subject_token") == "" || f.Get("subject_token_type") != accessTokenType {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	if t := f.Get("requested_token_type"); t != "" && t != accessTokenType {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	sub, ok := p.verifySubject(f.Get("subject_token"))
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		return
	}
	resp := map[string]any{
		"access_token":      ExchangedToken(sub, f.Get("audience"), seq),
		"token_type":        "Bearer",
		"issued_token_type": accessTokenType,
	}
	if s := f.Get("scope"); s != "" {
		resp["scope"] = s
	}
	if ttl > 0 {
		resp["expires_in"] = int(ttl.Seconds())
	}
	writeJSON(w, http.StatusOK, resp)
}

// verifySubject returns the sub of a token this IdP signed that has not expired.
func (p *IdP) verifySubject(tok string) (string, bool) {
	u, err := jose.Parse(tok, 0)
	if err != nil {
		return "", false
	}
	p.mu.Lock()
	jwks, err := jose.PublicJWKS(p.keys)
	p.mu.Unlock()
	if err != nil {
		return "", false
	}
	ks, _, err := jose.ParseKeySet(jwks)
	if err != nil {
		return "", false
	}
	c, err := u.Verify(ks, []string{"ES256"})
	if err != nil || c.Issuer != p.URL() || !c.HasExpiry || !time.Now().Before(c.Expiry) {
		return "", false
	}
	return c.Subject, true
}
