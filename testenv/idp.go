package testenv

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
)

// IdP is a fake external identity provider: an OIDC discovery document, a JWKS, and an RFC 6749
// §4.4 client-credentials token endpoint. It is a real HTTP server that counts its requests and
// can be told to fail, be slow, rate-limit or rotate its keys.
type IdP struct {
	srv *httptest.Server

	mu       sync.Mutex
	keys     []*jose.SigningKey // first signs; all published
	clients  map[string]string  // client_id -> secret
	ttl      time.Duration      // expires_in of issued tokens; 0 omits expires_in
	down     bool
	delay    time.Duration
	retryAft int // >0: answer 429 with this Retry-After
	lastForm url.Values
	lastAuth string
	seq      int

	TokenRequests atomic.Int64
	JWKSRequests  atomic.Int64

	intro introspection // the RFC 7662 endpoint (idp_introspect.go)
	exch  exchange      // the RFC 8693 grant (idp_exchange.go)

	asrt         assertions // RFC 7523 client authentication (idp_assertion.go)
	asrtRejected atomic.Int64
}

// IdPTokenPath and IdPJWKSPath are where the IdP serves its endpoints.
const (
	IdPTokenPath = "/oauth/token"
	IdPJWKSPath  = "/.well-known/jwks.json"
)

// NewIdP starts an IdP on 127.0.0.1:0 (or addr) with one ES256 key and the given clients
// (client_id → secret). Issued tokens last one hour unless SetTokenTTL says otherwise.
func NewIdP(addr string, clients map[string]string) (*IdP, error) {
	idp, mux, err := newIdP(clients)
	if err != nil {
		return nil, err
	}
	idp.srv, err = startServer(addr, mux)
	if err != nil {
		return nil, err
	}
	return idp, nil
}

func newIdP(clients map[string]string) (*IdP, *http.ServeMux, error) {
	key, err := jose.GenerateKey("ES256", "idp-1")
	if err != nil {
		return nil, nil, err
	}
	idp := &IdP{keys: []*jose.SigningKey{key}, clients: map[string]string{}, ttl: time.Hour}
	for id, s := range clients {
		idp.clients[id] = s
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", idp.discovery)
	mux.HandleFunc("GET "+IdPJWKSPath, idp.jwks)
	mux.HandleFunc("POST "+IdPTokenPath, idp.token)
	mux.HandleFunc("POST "+IdPIntrospectPath, idp.introspect)
	return idp, mux, nil
}

// URL is the IdP's issuer URL (no trailing slash).
func (p *IdP) URL() string { return p.srv.URL }

// TokenURL is its token endpoint.
func (p *IdP) TokenURL() string { return p.srv.URL + IdPTokenPath }

// JWKSURL is its JWKS.
func (p *IdP) JWKSURL() string { return p.srv.URL + IdPJWKSPath }

// Close stops the server.
func (p *IdP) Close() { p.srv.Close() }

// SetDown makes every endpoint answer 500 (true) or work again (false).
func (p *IdP) SetDown(down bool) { p.mu.Lock(); p.down = down; p.mu.Unlock() }

// SetDelay makes every answer wait d first.
func (p *IdP) SetDelay(d time.Duration) { p.mu.Lock(); p.delay = d; p.mu.Unlock() }

// SetRateLimited makes the token endpoint answer 429 with Retry-After: seconds (0 turns it off).
func (p *IdP) SetRateLimited(seconds int) { p.mu.Lock(); p.retryAft = seconds; p.mu.Unlock() }

// SetTokenTTL sets expires_in of issued tokens; 0 leaves expires_in out of the answer.
func (p *IdP) SetTokenTTL(d time.Duration) { p.mu.Lock(); p.ttl = d; p.mu.Unlock() }

// LastTokenRequest returns the form and Authorization header of the last token request.
func (p *IdP) LastTokenRequest() (url.Values, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastForm, p.lastAuth
}

// Rotate adds a new signing key, which signs from now on; the old keys stay published.
func (p *IdP) Rotate() (kid string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	kid = fmt.Sprintf("idp-%d", len(p.keys)+1)
	key, err := jose.GenerateKey("ES256", kid)
	if err != nil {
		return "", err
	}
	p.keys = append([]*jose.SigningKey{key}, p.keys...)
	return kid, nil
}

// CallerToken signs a JWT for a caller, as the IdP's users would get one: iss is the IdP, exp
// one hour ahead, typ JWT; claims given override those defaults.
func (p *IdP) CallerToken(claims map[string]any) (string, error) {
	now := time.Now()
	c := map[string]any{"iss": p.URL(), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": randomHex(8)}
	for k, v := range claims {
		c[k] = v
	}
	p.mu.Lock()
	key := p.keys[0]
	p.mu.Unlock()
	return key.Sign(c, "JWT")
}

func (p *IdP) gate(w http.ResponseWriter) bool {
	p.mu.Lock()
	down, delay := p.down, p.delay
	p.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if down {
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return false
	}
	return true
}

func (p *IdP) discovery(w http.ResponseWriter, r *http.Request) {
	if !p.gate(w) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer": p.URL(), "jwks_uri": p.JWKSURL(), "token_endpoint": p.TokenURL(),
		"grant_types_supported": []string{"client_credentials"},
	})
}

func (p *IdP) jwks(w http.ResponseWriter, r *http.Request) {
	p.JWKSRequests.Add(1)
	if !p.gate(w) {
		return
	}
	p.mu.Lock()
	body, err := jose.PublicJWKS(p.keys)
	p.mu.Unlock()
	if err != nil {
		http.Error(w, "jwks", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// token implements the client-credentials grant with client_secret_basic or
// client_secret_post, answering opaque tokens (as Curity does by default).
func (p *IdP) token(w http.ResponseWriter, r *http.Request) {
	p.TokenRequests.Add(1)
	if !p.gate(w) {
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	p.mu.Lock()
	p.lastForm, p.lastAuth = r.PostForm, r.Header.Get("Authorization")
	retry, ttl := p.retryAft, p.ttl
	p.seq++
	seq := p.seq
	p.mu.Unlock()
	if retry > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retry))
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "temporarily_unavailable"})
		return
	}
	if g := r.PostForm.Get("grant_type"); g != "client_credentials" && g != tokenExchangeGrant {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	id, ok := p.authenticateClient(r, p.TokenURL())
	if !ok {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	if r.PostForm.Get("grant_type") == tokenExchangeGrant {
		p.tokenExchange(w, r, id, seq, ttl)
		return
	}
	p.issue(w, r, id, seq, ttl)
}

// authenticateClient authenticates the client of a request to endpoint (its form parsed) as a
// real IdP does, by exactly one method: a verified TLS client certificate (RFC 8705 §2), a JWT
// client assertion (RFC 7523 §2.2) whose aud is endpoint or the token endpoint, or a secret
// (client_secret_basic, form-encoded per RFC 6749 §2.3.1, or client_secret_post).
func (p *IdP) authenticateClient(r *http.Request, endpoint string) (string, bool) {
	id, secret, basic := r.BasicAuth()
	if cn, ok := p.tlsClient(r); ok && !basic && !r.PostForm.Has("client_secret") && !r.PostForm.Has("client_assertion") {
		id = r.PostForm.Get("client_id")
		return id, p.tlsClientMatches(id, cn)
	}
	if r.PostForm.Has("client_assertion") {
		id, ok := p.verifyAssertion(r.PostForm, endpoint)
		return id, ok && !basic
	}
	if basic {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	p.mu.Lock()
	want, known := p.clients[id]
	p.mu.Unlock()
	return id, known && subtle.ConstantTimeCompare([]byte(want), []byte(secret)) == 1
}

// issue answers a client-credentials request of an authenticated client.
func (p *IdP) issue(w http.ResponseWriter, r *http.Request, id string, seq int, ttl time.Duration) {
	resp := map[string]any{
		"access_token": fmt.Sprintf("opaque-%s-%d-%s", id, seq, randomHex(8)),
		"token_type":   "bearer",
	}
	if s := r.PostForm.Get("scope"); s != "" {
		resp["scope"] = s
	}
	if ttl > 0 {
		resp["expires_in"] = int(ttl.Seconds())
	}
	writeJSON(w, http.StatusOK, resp)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
