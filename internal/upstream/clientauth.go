package upstream

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
)

// ClientAssertionType is the client_assertion_type of a JWT client assertion (RFC 7523 §2.2).
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// MaxAssertionLifetime bounds the exp of the assertions PrivateKeyJWTAuth signs: an assertion
// is single use (RFC 7523 §3 item 7: jti), so a short lifetime limits what a captured one is
// worth and how long an IdP must remember its jti.
const MaxAssertionLifetime = 60 * time.Second

// maxAssertionFileBytes caps what ClientAssertionFileAuth reads: a projected service-account
// token is a few kilobytes.
const maxAssertionFileBytes = 64 << 10

// assertionAuth is implemented by the ClientAuths that send a client assertion in the form
// (RFC 7521 §4.2), which x/oauth2's clientcredentials can carry as endpoint parameters.
type assertionAuth interface {
	ClientAuth
	// authID names the credential (not its value) for the token cache key.
	authID() string
}

// PrivateKeyJWTAuth is private_key_jwt (RFC 7523 §2.2, OpenID Connect Core §9): every request
// carries a fresh JWT signed with the client's key, iss = sub = the client id, aud = the token
// endpoint (or Audience), a random jti and an exp at most MaxAssertionLifetime ahead.
type PrivateKeyJWTAuth struct {
	ClientID string
	Key      *jose.SigningKey
	Audience string        // the assertion's aud; "" means the token endpoint URL (RFC 7523 §3 item 3)
	Lifetime time.Duration // exp - iat; 0 or more than MaxAssertionLifetime means MaxAssertionLifetime
	Now      func() time.Time
}

// Authenticate signs a new assertion and adds it with client_id to the form.
func (a PrivateKeyJWTAuth) Authenticate(_ context.Context, tokenURL string, form url.Values, _ http.Header) error {
	if a.Key == nil || a.ClientID == "" {
		return errors.New("upstream: private_key_jwt: no key or client id")
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	life := a.Lifetime
	if life <= 0 || life > MaxAssertionLifetime {
		life = MaxAssertionLifetime
	}
	aud := a.Audience
	if aud == "" {
		aud = tokenURL
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return errors.New("upstream: private_key_jwt: no randomness for jti")
	}
	t := now()
	assertion, err := a.Key.Sign(map[string]any{
		"iss": a.ClientID,
		"sub": a.ClientID,
		"aud": aud,
		"jti": hex.EncodeToString(jti[:]),
		"iat": t.Unix(),
		"exp": t.Add(life).Unix(),
	}, "")
	if err != nil {
		return errors.New("upstream: private_key_jwt: cannot sign the assertion")
	}
	form.Set("client_id", a.ClientID)
	form.Set("client_assertion_type", ClientAssertionType)
	form.Set("client_assertion", assertion)
	return nil
}

func (a PrivateKeyJWTAuth) authID() string {
	if a.Key == nil {
		return "private_key_jwt"
	}
	return "private_key_jwt\x00" + a.Key.Algorithm() + "\x00" + a.Key.KeyID() + "\x00" + a.Audience
}

// ClientAssertionFileAuth sends a ready-made JWT client assertion read from File on every
// request (RFC 7521 §4.2, RFC 7523 §2.2): a projected Kubernetes service-account token, which
// the kubelet rewrites before it expires, so the file is never cached. This is how workload
// identity federation (Entra ID, Google, AWS, Keycloak) authenticates a client with no secret.
type ClientAssertionFileAuth struct {
	ClientID string
	File     string
	Log      *slog.Logger // where a missing or empty file is reported (by name only); nil for none
}

// Authenticate reads the assertion and adds it with client_id to the form. A missing, empty or
// oversized file is an error naming the file, never its content: the request is not sent.
func (a ClientAssertionFileAuth) Authenticate(_ context.Context, _ string, form url.Values, _ http.Header) error {
	v, err := a.read()
	if err != nil {
		if a.Log != nil {
			a.Log.Warn("cannot read the client assertion file", "file", a.File, "error", err.Error())
		}
		return err
	}
	form.Set("client_id", a.ClientID)
	form.Set("client_assertion_type", ClientAssertionType)
	form.Set("client_assertion", v)
	return nil
}

// read returns the file's content without surrounding white space. Its errors name the file
// and say what is wrong, never what the file holds.
func (a ClientAssertionFileAuth) read() (string, error) {
	f, err := os.Open(a.File)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("client assertion file %s: missing", a.File)
		}
		return "", fmt.Errorf("client assertion file %s: cannot be read", a.File)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAssertionFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("client assertion file %s: cannot be read", a.File)
	}
	if len(b) > maxAssertionFileBytes {
		return "", fmt.Errorf("client assertion file %s: larger than %d bytes", a.File, maxAssertionFileBytes)
	}
	v := bytes.TrimSpace(b)
	if len(v) == 0 {
		return "", fmt.Errorf("client assertion file %s: empty", a.File)
	}
	if !isVSChars(string(v)) {
		return "", fmt.Errorf("client assertion file %s: not a compact JWT", a.File)
	}
	return string(v), nil
}

func (a ClientAssertionFileAuth) authID() string {
	return "client_assertion_file\x00" + a.File
}

// TLSClientAuth is tls_client_auth (RFC 8705 §2): the client proves itself with its X.509
// certificate in the TLS handshake with the token endpoint and sends only client_id in the
// form. The certificate and key are re-read when their files change (cert-manager rotates
// them in place), so the route needs its own HTTP client: build it with NewTLSClientAuth.
type TLSClientAuth struct {
	ClientID string
	certs    *certReloader
	rt       *http.Transport
}

// NewTLSClientAuth loads certFile and keyFile (PEM) now, so a pair that does not load is a
// start-up error, and trusts caFile's certificates for the token endpoint ("" for the system
// roots). Errors name the file, never its content.
func NewTLSClientAuth(clientID, certFile, keyFile, caFile string) (*TLSClientAuth, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile}
	if _, err := r.get(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return r.get()
	}}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca_file %s: cannot be read", caFile)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca_file %s: no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	t.MaxIdleConnsPerHost = 16
	t.ResponseHeaderTimeout = time.Minute
	a := &TLSClientAuth{ClientID: clientID, certs: r, rt: t}
	// A new certificate is presented only in a new handshake: drop idle connections that
	// authenticated with the old one.
	r.onReload = t.CloseIdleConnections
	return a, nil
}

// Authenticate adds client_id (RFC 8705 §2: the certificate authenticates, the id names the
// client).
func (a *TLSClientAuth) Authenticate(_ context.Context, _ string, form url.Values, _ http.Header) error {
	// Look at the files before every request, so a rotated certificate is noticed (and the
	// idle connections of the old one closed) before the request picks a connection.
	if _, err := a.certs.get(); err != nil {
		return err
	}
	form.Set("client_id", a.ClientID)
	return nil
}

// Transport is the mutual-TLS transport that presents the client's certificate: requests
// authenticated by a (at the token endpoint, or at an introspection endpoint) go through it.
func (a *TLSClientAuth) Transport() http.RoundTripper { return a.rt }

func (a *TLSClientAuth) authID() string {
	return "tls_client_auth\x00" + a.certs.certFile + "\x00" + a.certs.keyFile
}

// httpClient is the client for auth's requests: the route's own mutual-TLS transport for a
// TLSClientAuth, the cache's shared one otherwise; both with the same policies (no redirects,
// size cap, TLS verification on).
func (c *Cache) httpClient(auth ClientAuth) *http.Client {
	a, ok := auth.(*TLSClientAuth)
	if !ok {
		return c.client
	}
	limit := int64(DefaultMaxResponseBytes)
	if ct, ok := c.client.Transport.(*capTransport); ok {
		limit = ct.max
	}
	return newHTTPClient(&http.Client{Transport: a.Transport(), Timeout: c.client.Timeout}, limit)
}

// certReloader holds a certificate and key pair and loads it again when either file's size or
// modification time changes; a pair that fails to load keeps the last good one (a rotation is
// two writes, and the handshake between them must not fail).
type certReloader struct {
	certFile, keyFile string
	onReload          func()

	mu      sync.Mutex
	cert    *tls.Certificate
	version string
}

func (r *certReloader) get() (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, err := fileVersion(r.certFile, r.keyFile)
	if err == nil && v == r.version && r.cert != nil {
		return r.cert, nil
	}
	if err == nil {
		c, lerr := tls.LoadX509KeyPair(r.certFile, r.keyFile)
		if lerr == nil {
			reloaded := r.cert != nil
			r.cert, r.version = &c, v
			if reloaded && r.onReload != nil {
				r.onReload() // takes only the transport's idle-pool lock, never r.mu
			}
			return r.cert, nil
		}
		err = fmt.Errorf("tls cert_file %s / key_file %s: not a matching PEM certificate and key", r.certFile, r.keyFile)
	}
	if r.cert != nil {
		return r.cert, nil
	}
	return nil, err
}

func fileVersion(names ...string) (string, error) {
	var b strings.Builder
	for _, n := range names {
		fi, err := os.Stat(n)
		if err != nil {
			return "", fmt.Errorf("tls file %s: cannot be read", n)
		}
		fmt.Fprintf(&b, "%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}
