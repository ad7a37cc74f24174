package testenv

import (
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// IdPIntrospectPath is where the IdP serves RFC 7662 token introspection.
const IdPIntrospectPath = "/oauth/introspect"

// IntrospectMode switches the introspection endpoint's behaviour.
type IntrospectMode int

// Introspection modes: the true answer, or one of the ways an answer can be refused or fail.
const (
	IntrospectNormal     IntrospectMode = iota
	IntrospectInactive                  // every token is {"active":false}
	IntrospectForeignIss                // active, iss of another issuer
	IntrospectForeignAud                // active, aud of another audience
	IntrospectExpired                   // active, exp a minute ago
	Introspect500                       // 500
	IntrospectHang                      // never answers (until the client gives up)
)

type introspection struct {
	mu       sync.Mutex
	mode     IntrospectMode
	tokens   map[string]map[string]any // opaque token -> its claims
	Requests atomic.Int64
}

// IntrospectionURL is the IdP's introspection endpoint.
func (p *IdP) IntrospectionURL() string { return p.srv.URL + IdPIntrospectPath }

// IntrospectionRequests counts calls to the introspection endpoint.
func (p *IdP) IntrospectionRequests() int64 { return p.intro.Requests.Load() }

// SetIntrospection switches the introspection endpoint's mode.
func (p *IdP) SetIntrospection(m IntrospectMode) {
	p.intro.mu.Lock()
	p.intro.mode = m
	p.intro.mu.Unlock()
}

// OpaqueToken issues an opaque (random) access token whose introspection answer holds iss (the
// IdP), exp one hour ahead, iat, and the given claims over those.
func (p *IdP) OpaqueToken(claims map[string]any) string {
	now := time.Now()
	c := map[string]any{"iss": p.URL(), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "token_type": "Bearer"}
	for k, v := range claims {
		c[k] = v
	}
	tok := "opaque-" + randomHex(16)
	p.intro.mu.Lock()
	if p.intro.tokens == nil {
		p.intro.tokens = map[string]map[string]any{}
	}
	p.intro.tokens[tok] = c
	p.intro.mu.Unlock()
	return tok
}

// introspect answers RFC 7662 §2: the caller authenticates as one of the IdP's clients, by any
// method its token endpoint accepts (authenticateClient); an unknown token is inactive.
func (p *IdP) introspect(w http.ResponseWriter, r *http.Request) {
	p.intro.Requests.Add(1)
	if err := r.ParseForm(); err != nil {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	if _, ok := p.authenticateClient(r, p.IntrospectionURL()); !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="idp"`)
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	p.intro.mu.Lock()
	mode := p.intro.mode
	claims, found := p.intro.tokens[r.PostFormValue("token")]
	p.intro.mu.Unlock()
	ans := map[string]any{"active": false}
	if found {
		ans = map[string]any{"active": true}
		for k, v := range claims {
			ans[k] = v
		}
	}
	switch mode {
	case IntrospectInactive:
		ans = map[string]any{"active": false}
	case IntrospectForeignIss:
		ans["iss"] = "https://foreign.example.com"
	case IntrospectForeignAud:
		ans["aud"] = "api://foreign"
	case IntrospectExpired:
		ans["exp"] = time.Now().Add(-time.Minute).Unix()
	case Introspect500:
		http.Error(w, "down", http.StatusInternalServerError)
		return
	case IntrospectHang:
		<-r.Context().Done()
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(ans)
}
