package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testkit"
)

// newClock is a hand-moved clock starting at the current second.
func newClock() *testkit.Clock { return testkit.NewClock(time.Now().Truncate(time.Second)) }

// seen is what the IdP received in one request.
type seen struct {
	method, auth, contentType string
	form                      url.Values
	user, pass                string
	hasBasic                  bool
}

// idp is a real token endpoint on 127.0.0.1 that counts requests and misbehaves on demand.
type idp struct {
	t     testing.TB
	srv   *httptest.Server
	calls atomic.Int64
	mu    sync.Mutex
	reqs  []seen
	h     atomic.Pointer[func(w http.ResponseWriter, r *http.Request, n int64)]
	stop  chan struct{} // closed at cleanup: releases hanging handlers
}

func newIDP(t testing.TB) *idp {
	t.Helper()
	i := &idp{t: t, stop: make(chan struct{})}
	i.set(i.okHandler(100))
	i.srv = httptest.NewServer(http.HandlerFunc(i.serve))
	t.Cleanup(func() {
		close(i.stop)
		i.srv.CloseClientConnections()
		i.srv.Close()
	})
	return i
}

func (i *idp) url() string { return i.srv.URL + "/oauth/token" }

func (i *idp) set(h func(w http.ResponseWriter, r *http.Request, n int64)) { i.h.Store(&h) }

func (i *idp) serve(w http.ResponseWriter, r *http.Request) {
	n := i.calls.Add(1)
	_ = r.ParseForm()
	s := seen{method: r.Method, auth: r.Header.Get("Authorization"), contentType: r.Header.Get("Content-Type"), form: r.PostForm}
	s.user, s.pass, s.hasBasic = r.BasicAuth()
	if s.hasBasic {
		s.user, _ = url.QueryUnescape(s.user)
		s.pass, _ = url.QueryUnescape(s.pass)
	}
	i.mu.Lock()
	i.reqs = append(i.reqs, s)
	i.mu.Unlock()
	(*i.h.Load())(w, r, n)
}

func (i *idp) last() seen {
	i.mu.Lock()
	defer i.mu.Unlock()
	if len(i.reqs) == 0 {
		i.t.Fatal("the IdP saw no request")
	}
	return i.reqs[len(i.reqs)-1]
}

func (i *idp) n() int64 { return i.calls.Load() }

// okHandler answers tok-<n> with the given expires_in (nil: omitted).
func (i *idp) okHandler(expiresIn any) func(w http.ResponseWriter, r *http.Request, n int64) {
	return func(w http.ResponseWriter, r *http.Request, n int64) {
		body := map[string]any{"access_token": fmt.Sprintf("tok-%d", n), "token_type": "Bearer"}
		if expiresIn != nil {
			body["expires_in"] = expiresIn
		}
		writeJSON(w, 200, body)
	}
}

// hang blocks until the client gives up or the test ends.
func (i *idp) hang(w http.ResponseWriter, r *http.Request, n int64) {
	select {
	case <-r.Context().Done():
	case <-i.stop:
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func newLogger() (*slog.Logger, *testkit.LogBuffer) {
	b := &testkit.LogBuffer{}
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// idle waits until no refresh of key is running (the IdP's latency, negligible next to a
// token's lifetime, has passed).
func idle(t testing.TB, c *Cache, key Key) {
	t.Helper()
	testkit.WaitFor(t, "refresh to finish", 5*time.Second, 2*time.Millisecond, func() bool {
		e, ok := c.tokens.Peek(key)
		return !ok || !e.refreshing.Load()
	})
}

func baseCC(i *idp) ClientCredentials {
	return ClientCredentials{TokenURL: i.url(), ClientID: "gw", ClientSecret: "gw-secret-value", Timeout: 500 * time.Millisecond}
}

func newTestCache(t testing.TB, clk *testkit.Clock, mod func(*Options)) *Cache {
	t.Helper()
	o := Options{Now: clk.Now, BackoffBase: time.Second, BackoffMax: 8 * time.Second}
	if mod != nil {
		mod(&o)
	}
	c := NewCache(o)
	t.Cleanup(c.Close)
	return c
}

var bg = context.Background()
