package jwkstest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Mode is how the server answers.
type Mode int

// Modes of the JWKS and discovery endpoints.
const (
	OK          Mode = iota // the configured document, 200
	Status500               // 500 with a small body
	NotFound                // 404
	Hang                    // never answers (until the client gives up or the server closes)
	Garbage                 // 200 with a body that is not JSON
	Huge                    // 200 with a 10 MB JSON-looking body and a Content-Length
	HugeChunked             // the same without Content-Length (chunked)
	Reset                   // the connection is closed without an answer
	Redirect                // 302 to another path of the same server
)

// HugeSize is the body size of Huge and HugeChunked.
const HugeSize = 10 << 20

// Paths served.
const (
	JWKSPath      = "/jwks"
	DiscoveryPath = "/.well-known/openid-configuration"
)

// Server is a JWKS and OpenID discovery server on 127.0.0.1. It counts requests per path.
type Server struct {
	*httptest.Server

	mu           sync.Mutex
	jwks         []byte
	cacheControl string
	mode         Mode
	discIssuer   string // "" means the server's own URL
	discMode     Mode
	discJWKSURI  string
	delay        time.Duration

	jwksHits, discHits atomic.Int64
	quit               chan struct{}
	closeOnce          sync.Once
}

// NewServer starts a plain-HTTP server serving jwks at JWKSPath; it is closed at test cleanup.
func NewServer(tb testing.TB, jwks []byte) *Server {
	s := newServer(jwks)
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.Close)
	return s
}

// NewTLSServer is NewServer over TLS; use s.Client() (which trusts its certificate).
func NewTLSServer(tb testing.TB, jwks []byte) *Server {
	s := newServer(jwks)
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.Close)
	return s
}

func newServer(jwks []byte) *Server {
	return &Server{jwks: jwks, quit: make(chan struct{})}
}

// Close releases hanging handlers and stops the server. It may be called more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.quit)
		s.Server.CloseClientConnections()
		s.Server.Close()
	})
}

// JWKSURL is the URL of the JWK Set.
func (s *Server) JWKSURL() string { return s.URL + JWKSPath }

// SetJWKS replaces the served JWK Set.
func (s *Server) SetJWKS(b []byte) { s.mu.Lock(); s.jwks = b; s.mu.Unlock() }

// SetMode sets how the JWKS endpoint answers.
func (s *Server) SetMode(m Mode) { s.mu.Lock(); s.mode = m; s.mu.Unlock() }

// SetDelay makes every answer wait d first (a slow IdP).
func (s *Server) SetDelay(d time.Duration) { s.mu.Lock(); s.delay = d; s.mu.Unlock() }

// SetCacheControl sets the Cache-Control header of JWKS answers ("" for none).
func (s *Server) SetCacheControl(v string) { s.mu.Lock(); s.cacheControl = v; s.mu.Unlock() }

// SetDiscovery sets the issuer the discovery document claims ("" for the server's URL), its
// jwks_uri ("" for JWKSURL) and how the discovery endpoint answers.
func (s *Server) SetDiscovery(issuer, jwksURI string, m Mode) {
	s.mu.Lock()
	s.discIssuer, s.discJWKSURI, s.discMode = issuer, jwksURI, m
	s.mu.Unlock()
}

// JWKSRequests is the number of requests the JWKS endpoint received.
func (s *Server) JWKSRequests() int64 { return s.jwksHits.Load() }

// DiscoveryRequests is the number of requests the discovery endpoint received.
func (s *Server) DiscoveryRequests() int64 { return s.discHits.Load() }

// WaitJWKSRequests polls until the JWKS endpoint has received at least n requests or timeout
// passes, and returns the count.
func (s *Server) WaitJWKSRequests(n int64, timeout time.Duration) int64 {
	deadline := time.Now().Add(timeout)
	for s.JWKSRequests() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return s.JWKSRequests()
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	jwks, cc, mode := s.jwks, s.cacheControl, s.mode
	discIssuer, discJWKS, discMode := s.discIssuer, s.discJWKSURI, s.discMode
	delay := s.delay
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		case <-s.quit:
			return
		}
	}
	var body []byte
	switch r.URL.Path {
	case JWKSPath:
		s.jwksHits.Add(1)
		body = jwks
		if cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
	case DiscoveryPath:
		s.discHits.Add(1)
		mode = discMode
		if discIssuer == "" {
			discIssuer = s.URL
		}
		if discJWKS == "" {
			discJWKS = s.JWKSURL()
		}
		body, _ = json.Marshal(map[string]any{"issuer": discIssuer, "jwks_uri": discJWKS})
	case "/elsewhere":
		body = jwks
		mode = OK
	default:
		http.NotFound(w, r)
		return
	}
	switch mode {
	case OK:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	case Status500:
		http.Error(w, "internal error", http.StatusInternalServerError)
	case NotFound:
		http.NotFound(w, r)
	case Hang:
		select {
		case <-r.Context().Done():
		case <-s.quit:
		}
	case Garbage:
		_, _ = w.Write([]byte("<html>this is not a JWK Set</html>"))
	case Huge, HugeChunked:
		if mode == Huge {
			w.Header().Set("Content-Length", strconv.Itoa(HugeSize))
		}
		chunk := bytes.Repeat([]byte(" "), 64<<10)
		for written := 0; written < HugeSize; written += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	case Reset:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	case Redirect:
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}
}
