package app

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/tokengate/tokengate/extauthz"
	"github.com/tokengate/tokengate/internal/upstream"
	"github.com/tokengate/tokengate/internal/verify"
	"github.com/tokengate/tokengate/issuer"
)

// state is everything built from one configuration; it is replaced whole on reload.
type state struct {
	issuer     *issuer.Issuer // nil without an issuer section
	issuerMux  *http.ServeMux // the issuer's endpoints, nil without an issuer
	verifier   *verify.Verifier
	authorizer *extauthz.Authorizer
}

func (s *state) missing() []string {
	if s.verifier == nil {
		return nil
	}
	return s.verifier.Missing()
}

// close releases what the state holds; key sources a newer state took over stay open (the
// verifier counts their users).
func (s *state) close() {
	if s.verifier != nil {
		s.verifier.Close()
	}
}

// issuerMinter adapts the built-in issuer to extauthz.Minter.
type issuerMinter struct {
	iss   *issuer.Issuer
	epoch string
	now   func() time.Time
}

func newIssuerMinter(iss *issuer.Issuer, now func() time.Time) *issuerMinter {
	sum := sha256.Sum256(iss.PublicJWKS())
	return &issuerMinter{iss: iss, epoch: hex.EncodeToString(sum[:8]), now: now}
}

func (m *issuerMinter) Mint(ctx context.Context, r extauthz.MintRequest) (upstream.Token, error) {
	tok, exp, _, err := m.iss.Mint(ctx, issuer.MintRequest{
		Subject: r.Subject, ClientID: r.ClientID, Audience: r.Audience, Scopes: r.Scopes,
		TTL: r.TTL, NotAfter: r.NotAfter,
	})
	if err != nil {
		return upstream.Token{}, err
	}
	return upstream.Token{AccessToken: tok, Expiry: exp, IssuedAt: m.now()}, nil
}

// KeyEpoch is a hash of the published keys: a reload that changes them changes every mint
// cache key, so a token signed by a retired key is never served again.
func (m *issuerMinter) KeyEpoch() string { return m.epoch }

// newHTTPClient is the client for JWKS and token endpoints: TLS verification always on
// (TLS 1.2+), bounded dials and handshakes, and no redirects (a token endpoint or JWKS that
// redirects is misconfigured or hijacked; following it could leak credentials).
func newHTTPClient() *http.Client {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("redirects are not followed")
		},
	}
}
