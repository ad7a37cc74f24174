package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tokengate/tokengate/extauthz"
	"github.com/tokengate/tokengate/internal/config"
	"github.com/tokengate/tokengate/internal/jwks"
	"github.com/tokengate/tokengate/internal/verify"
	"github.com/tokengate/tokengate/issuer"
)

// state is everything built from one configuration: one generation, replaced whole on reload
// by a single atomic store (App.state). Every transport reads it there, the gRPC Check and
// /authz alike, so no request ever sees one configuration's routes with another's issuer or
// forward-auth settings.
type state struct {
	issuer     *issuer.Issuer // nil without an issuer section
	issuerMux  *http.ServeMux // the issuer's endpoints, nil without an issuer
	verifier   *verify.Verifier
	authorizer *extauthz.Authorizer
	// forwardAuth is /authz with this configuration's header family and trusted proxies, so
	// a reload applies them as it applies the issuer's.
	forwardAuth *extauthz.ForwardAuth
	// clientKeys are the jwks_uri sources of private_key_jwt clients. A reload hands those whose
	// settings did not change to the next state, which then owns them; the rest close with this
	// state.
	clientKeys map[clientKeyID]*jwks.Remote
}

// clientKeyID is everything a client's jwks_uri source is built from that a configuration sets.
type clientKeyID struct {
	clientID, jwksURI string
	allowHTTP         bool
}

func (s *state) missing() []string {
	if s.verifier == nil {
		return nil
	}
	return s.verifier.Missing()
}

// close releases what the state holds; key sources a newer state took over stay open (the
// verifier counts their users; next, nil when there is none, holds the client key sources it
// took over).
func (s *state) close(next *state) {
	if s.verifier != nil {
		s.verifier.Close()
	}
	s.closeClientKeys(next)
}

// closeClientKeys closes the client key sources of s that other (may be nil) does not hold.
func (s *state) closeClientKeys(other *state) {
	for id, k := range s.clientKeys {
		if other == nil || other.clientKeys[id] != k {
			k.Close()
		}
	}
}

// gatewayRecheck is how often, at most, the gateway_tls files are looked at (one stat each) to
// notice a rotation, e.g. cert-manager renewing the Secret they are mounted from.
const gatewayRecheck = time.Second

// gatewayCerts is the certificate material of server.gateway_tls
// (docs/deployment.md#deployment-security): the server certificate and, with client_ca_file, the
// CAs whose gateway certificates are accepted. Every handshake asks it for the current material; it
// re-reads the files when their modification time or size changes, checking at most once per
// gatewayRecheck. A rotation that leaves unreadable files keeps the previous material (and says
// so), so a half-written Secret never takes the gateway listeners down.
type gatewayCerts struct {
	certPath, keyPath, caPath string
	sans                      []string // client_sans, DNS names lower-cased
	now                       func() time.Time
	logger                    *slog.Logger

	mu      sync.Mutex
	checked time.Time   // the last look at the files
	stamps  []fileStamp // the files as they were when material was last read
	failed  []fileStamp // the files as they were when a read last failed
	lastErr string      // the last problem logged
	cert    *tls.Certificate
	pool    *x509.CertPool // nil without client_ca_file
	loads   int            // how many times the files were read (the tests count it)
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// newGatewayCerts reads the files once: a configuration whose certificate cannot be loaded is
// refused at start. The paths are those config.Load resolved against the configuration file's
// directory (CertPath…); when empty, the *File values are resolved here the same way.
func newGatewayCerts(g *config.GatewayTLS, configPath string, now func() time.Time, logger *slog.Logger) (*gatewayCerts, error) {
	resolve := func(resolved, file string) string {
		if resolved != "" || file == "" {
			return resolved
		}
		if !filepath.IsAbs(file) && configPath != "" {
			return filepath.Join(filepath.Dir(configPath), file)
		}
		return file
	}
	c := &gatewayCerts{
		certPath: resolve(g.CertPath, g.CertFile),
		keyPath:  resolve(g.KeyPath, g.KeyFile),
		caPath:   resolve(g.ClientCAPath, g.ClientCAFile),
		now:      now,
		logger:   logger,
	}
	for _, san := range g.ClientSANs {
		if !strings.Contains(san, ":") {
			san = strings.ToLower(san) // DNS names compare case-insensitively (RFC 4343)
		}
		c.sans = append(c.sans, san)
	}
	stamps, err := c.stat()
	if err != nil {
		return nil, err
	}
	if err := c.load(stamps); err != nil {
		return nil, err
	}
	c.checked = now()
	return c, nil
}

func (c *gatewayCerts) paths() []string {
	ps := []string{c.certPath, c.keyPath}
	if c.caPath != "" {
		ps = append(ps, c.caPath)
	}
	return ps
}

func (c *gatewayCerts) stat() ([]fileStamp, error) {
	var out []fileStamp
	for _, p := range c.paths() {
		fi, err := os.Stat(p) // follows the symlinks Kubernetes swaps on a Secret update
		if err != nil {
			return nil, err
		}
		out = append(out, fileStamp{mod: fi.ModTime(), size: fi.Size()})
	}
	return out, nil
}

// load reads every file; the caller holds mu (or owns c alone).
func (c *gatewayCerts) load(stamps []fileStamp) error {
	c.loads++
	cert, err := tls.LoadX509KeyPair(c.certPath, c.keyPath)
	if err != nil {
		return fmt.Errorf("cert_file/key_file: %w", err)
	}
	var pool *x509.CertPool
	if c.caPath != "" {
		pem, err := os.ReadFile(c.caPath)
		if err != nil {
			return fmt.Errorf("client_ca_file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("client_ca_file %s: no PEM certificate", c.caPath)
		}
	}
	c.cert, c.pool, c.stamps = &cert, pool, stamps
	return nil
}

// current returns the material to use for one handshake, re-reading the files when they
// changed.
func (c *gatewayCerts) current() (*tls.Certificate, *x509.CertPool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if d := now.Sub(c.checked); d >= 0 && d < gatewayRecheck {
		return c.cert, c.pool
	}
	c.checked = now
	stamps, err := c.stat()
	if err == nil && (sameStamps(stamps, c.stamps) || sameStamps(stamps, c.failed)) {
		return c.cert, c.pool
	}
	if err == nil {
		if err = c.load(stamps); err == nil {
			c.failed, c.lastErr = nil, ""
			c.logger.Info("gateway_tls: certificate files re-read")
			return c.cert, c.pool
		}
		c.failed = stamps
	}
	if msg := err.Error(); msg != c.lastErr { // once per distinct problem, not per handshake
		c.lastErr = msg
		c.logger.Warn("gateway_tls: the certificate files changed but cannot be read; the previous certificate stays in use", slog.String("error", msg))
	}
	return c.cert, c.pool
}

func sameStamps(a, b []fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].mod.Equal(b[i].mod) || a[i].size != b[i].size {
			return false
		}
	}
	return true
}

// serverConfig is the TLS configuration of a gateway listener offering nextProtos by ALPN:
// TLS 1.2 at least, the current certificate, and with client_ca_file a gateway certificate that
// CA signed (tls.RequireAndVerifyClientCert) carrying one of client_sans when they are set. Both
// are checked during the handshake, so a gateway without them never reaches a handler.
func (c *gatewayCerts) serverConfig(nextProtos []string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := c.current()
			cfg := &tls.Config{
				MinVersion:   tls.VersionTLS12,
				NextProtos:   nextProtos,
				Certificates: []tls.Certificate{*cert},
			}
			if c.caPath != "" {
				cfg.ClientAuth = tls.RequireAndVerifyClientCert
				cfg.ClientCAs = pool
				if len(c.sans) > 0 {
					cfg.VerifyConnection = c.verifySAN
				}
			}
			return cfg, nil
		},
	}
}

// errGatewaySAN fails a handshake whose client certificate carries none of client_sans.
var errGatewaySAN = errors.New("gateway_tls: the client certificate carries none of client_sans")

// verifySAN runs after the chain verified against client_ca_file: the leaf must carry one of
// client_sans as a DNS name (RFC 5280 section 4.2.1.6; a "*.example.com" entry allows one label
// in its place, as RFC 6125 section 6.4.3 reads wildcards) or as a URI such as a SPIFFE ID.
func (c *gatewayCerts) verifySAN(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errGatewaySAN
	}
	leaf := cs.PeerCertificates[0]
	for _, want := range c.sans {
		if strings.Contains(want, ":") {
			for _, u := range leaf.URIs {
				if u.String() == want {
					return nil
				}
			}
			continue
		}
		for _, dns := range leaf.DNSNames {
			if dnsMatches(want, strings.ToLower(dns)) {
				return nil
			}
		}
	}
	return errGatewaySAN
}

func dnsMatches(want, dns string) bool {
	dns = strings.TrimSuffix(dns, ".")
	if want == dns {
		return true
	}
	suffix, ok := strings.CutPrefix(want, "*.")
	if !ok {
		return false
	}
	label, rest, found := strings.Cut(dns, ".")
	return found && label != "" && label != "*" && rest == suffix
}
