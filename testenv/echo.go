package testenv

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
)

// Echoed is what the echo upstream saw.
type Echoed struct {
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Host    string              `json:"host"`
	Headers map[string][]string `json:"headers"` // canonical names
}

// Echo is an upstream that answers every request with the request it received, as JSON.
type Echo struct {
	srv *httptest.Server
}

// NewEcho starts an echo upstream on 127.0.0.1:0, or on addr when it is not empty.
func NewEcho(addr string) (*Echo, error) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Echoed{Method: r.Method, Path: r.URL.RequestURI(), Host: r.Host, Headers: r.Header})
	})
	srv, err := startServer(addr, h)
	if err != nil {
		return nil, err
	}
	return &Echo{srv: srv}, nil
}

// URL is the upstream's base URL.
func (e *Echo) URL() string { return e.srv.URL }

// Close stops the server.
func (e *Echo) Close() { e.srv.Close() }

// startServer starts h on addr (default 127.0.0.1:0).
func startServer(addr string, h http.Handler) (*httptest.Server, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	return srv, nil
}
