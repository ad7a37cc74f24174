package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
)

// clientAssertionType is RFC 7523 §2.2's client_assertion_type.
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// ReceivedAssertion is what the IdP saw of one client assertion it accepted: the raw JWT and
// its verified claims, so tests can assert each one.
type ReceivedAssertion struct {
	Raw    string
	Claims jose.Claims
}

// assertions is the state of RFC 7523 client authentication: the clients registered with a
// public key, the jtis already used, and what was received.
type assertions struct {
	mu       sync.Mutex
	clients  map[string]*jose.KeySet // client_id -> its public keys
	audience map[string]string       // client_id -> accepted aud besides the token endpoint
	seen     map[string]time.Time    // jti -> exp: a replayed assertion is refused (RFC 7523 §3 item 7)
	received []ReceivedAssertion

	tlsClients map[string]string // client_id -> the subject CN of its certificate (RFC 8705 §2.1.2)
	tlsSeen    []string
}

// RegisterAssertionClient registers clientID as authenticating with JWT assertions signed by one
// of the keys of jwks (a JWK Set, e.g. jose.PublicJWKS of the client's key), as a real IdP's
// private_key_jwt or workload-identity federation client. audience, when not "", is an aud
// accepted besides the token endpoint URL.
func (p *IdP) RegisterAssertionClient(clientID string, jwks []byte, audience string) error {
	ks, _, err := jose.ParseKeySet(jwks)
	if err != nil {
		return err
	}
	a := &p.asrt
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.clients == nil {
		a.clients, a.audience, a.seen = map[string]*jose.KeySet{}, map[string]string{}, map[string]time.Time{}
	}
	a.clients[clientID], a.audience[clientID] = ks, audience
	return nil
}

// Assertions returns every client assertion the IdP accepted, oldest first.
func (p *IdP) Assertions() []ReceivedAssertion {
	p.asrt.mu.Lock()
	defer p.asrt.mu.Unlock()
	return slices.Clone(p.asrt.received)
}

// AssertionRejections counts client assertions the IdP refused.
func (p *IdP) AssertionRejections() int64 { return p.asrtRejected.Load() }

// verifyAssertion authenticates the client of a request carrying client_assertion as a real IdP
// does (RFC 7523 §3): signature by a registered key, iss = sub = client_id, aud = the endpoint
// called or the token endpoint, exp present and at most 60 s after iat and now, jti present and never seen before.
// It returns the client id, or ok false for invalid_client.
func (p *IdP) verifyAssertion(form url.Values, endpoint string) (string, bool) {
	id, err := p.checkAssertion(form, endpoint)
	if err != nil {
		p.asrtRejected.Add(1)
		return "", false
	}
	return id, true
}

func (p *IdP) checkAssertion(form url.Values, endpoint string) (string, error) {
	if form.Get("client_assertion_type") != clientAssertionType || form.Get("client_secret") != "" {
		return "", errors.New("bad client_assertion_type or two methods")
	}
	raw := form.Get("client_assertion")
	u, err := jose.Parse(raw, 0)
	if err != nil {
		return "", err
	}
	a := &p.asrt
	a.mu.Lock()
	defer a.mu.Unlock()
	id := form.Get("client_id")
	ks, ok := a.clients[id]
	if !ok {
		return "", errors.New("unknown client")
	}
	c, err := u.Verify(ks, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"})
	if err != nil {
		return "", err
	}
	now := time.Now()
	if c.Issuer != id || c.Subject != id {
		return "", errors.New("iss/sub")
	}
	if !slices.Contains(c.Audience, p.TokenURL()) && !slices.Contains(c.Audience, endpoint) &&
		(a.audience[id] == "" || !slices.Contains(c.Audience, a.audience[id])) {
		return "", errors.New("aud")
	}
	if !jose.ValidTime(c.HasExpiry, c.Expiry) || !c.Expiry.After(now.Add(-5*time.Second)) || c.Expiry.After(now.Add(65*time.Second)) {
		return "", errors.New("exp")
	}
	if c.HasIssuedAt && c.Expiry.Sub(c.IssuedAt) > 60*time.Second {
		return "", errors.New("exp - iat over 60 s")
	}
	if c.ID == "" {
		return "", errors.New("no jti")
	}
	for j, exp := range a.seen {
		if now.After(exp.Add(5 * time.Second)) {
			delete(a.seen, j)
		}
	}
	if _, dup := a.seen[c.ID]; dup {
		return "", errors.New("replayed jti")
	}
	a.seen[c.ID] = c.Expiry
	a.received = append(a.received, ReceivedAssertion{Raw: raw, Claims: *c})
	return id, nil
}

// NewTLSIdP starts an IdP like NewIdP but over HTTPS (its certificate: CertificatePEM) that asks
// for client certificates issued by clientCAs, for tls_client_auth clients (RFC 8705 §2,
// RegisterTLSClient).
func NewTLSIdP(clients map[string]string, clientCAs *x509.CertPool) (*IdP, error) {
	idp, mux, err := newIdP(clients)
	if err != nil {
		return nil, err
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: clientCAs, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	idp.srv = srv
	return idp, nil
}

// CertificatePEM is the IdP's TLS certificate (NewTLSIdP), for a client's ca_file.
func (p *IdP) CertificatePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
}

// RegisterTLSClient registers clientID as a tls_client_auth client (RFC 8705 §2.1.2): it
// authenticates with a certificate chaining to the IdP's client CAs whose subject CN is cn.
func (p *IdP) RegisterTLSClient(clientID, cn string) {
	p.asrt.mu.Lock()
	defer p.asrt.mu.Unlock()
	if p.asrt.tlsClients == nil {
		p.asrt.tlsClients = map[string]string{}
	}
	p.asrt.tlsClients[clientID] = cn
}

// TLSClientCNs returns the subject CN of the verified client certificate of every token request
// that presented one, oldest first.
func (p *IdP) TLSClientCNs() []string {
	p.asrt.mu.Lock()
	defer p.asrt.mu.Unlock()
	return slices.Clone(p.asrt.tlsSeen)
}

// tlsClient returns the subject CN of r's verified client certificate, and records it.
func (p *IdP) tlsClient(r *http.Request) (string, bool) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return "", false
	}
	cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
	p.asrt.mu.Lock()
	p.asrt.tlsSeen = append(p.asrt.tlsSeen, cn)
	p.asrt.mu.Unlock()
	return cn, true
}

func (p *IdP) tlsClientMatches(id, cn string) bool {
	p.asrt.mu.Lock()
	defer p.asrt.mu.Unlock()
	want, ok := p.asrt.tlsClients[id]
	return ok && want == cn
}
