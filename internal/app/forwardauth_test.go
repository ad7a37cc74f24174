package app_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/app"
	"github.com/tokengate/tokengate/internal/testkit"
)

const faConfig = `server:
  forward_auth_headers: HEADERS
routes:
  - {name: public, match: {path_prefix: /public/}, authenticate: {none: {}}, upstream: {remove: {}}}
  - {name: all, authenticate: {none: {}}, upstream: {remove: {}}}
  - {name: shadowed, match: {path_prefix: /admin/}, authenticate: {none: {}}, upstream: {remove: {}}}
`

// TestForwardAuthServing: /authz with dot segments is judged (403, the path has no normal
// form), not redirected by the HTTP mux to its cleaned form; forward_auth_headers applies on
// reload like the rest of the configuration; configuration warnings are logged at start.
func TestForwardAuthServing(t *testing.T) {
	path := writeConfig(t, strings.Replace(faConfig, "HEADERS", "request", 1))
	var logs testkit.LogBuffer
	a, err := app.New(context.Background(), app.Options{ConfigPath: path, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	if !strings.Contains(logs.String(), "never chosen by match") || !strings.Contains(logs.String(), "routes[2].match") {
		t.Errorf("the shadowed-route warning is not logged at start:\n%s", logs.String())
	}

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(uri string, h map[string]string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+a.HTTPAddr()+uri, nil)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get("/authz/public/../admin/x", nil); got != http.StatusForbidden {
		t.Errorf("/authz/public/../admin/x = %d, want 403 (not a redirect)", got)
	}
	if got := get("/authz/public/x", nil); got != http.StatusOK {
		t.Errorf("/authz/public/x = %d, want 200", got)
	}
	// Under `request`, X-Original-URI is ignored: the request's own path decides.
	if got := get("/authz/public/x", map[string]string{"X-Original-URI": "/public/../x"}); got != http.StatusOK {
		t.Errorf("request mode read X-Original-URI: %d", got)
	}

	if err := os.WriteFile(path, []byte(strings.Replace(faConfig, "HEADERS", "x-original", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := get("/authz", map[string]string{"X-Original-URI": "/public/../x"}); got != http.StatusForbidden {
		t.Errorf("after reload to x-original, X-Original-URI with dot segments = %d, want 403", got)
	}
}
