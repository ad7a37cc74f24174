package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/app"
	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/testenv"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokengate.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// forwardAuth asks the server at addr about GET path as a forward-auth gateway does (GET
// /authz<path>), with the Bearer token (none when ""), and returns the answer, its body read.
func forwardAuth(t *testing.T, addr, path, bearer string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/authz"+path, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func start(t *testing.T, path string) (*app.App, context.CancelFunc, chan error) {
	t.Helper()
	a, err := app.New(context.Background(), app.Options{ConfigPath: path, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return a, cancel, done
}

// TestReadinessFollowsTheProviders: /readyz is 503 and names the provider while its keys never
// loaded, and becomes 200 once the JWKS answers (within the backoff window).
func TestReadinessFollowsTheProviders(t *testing.T) {
	idp, err := testenv.NewIdP("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	idp.SetDown(true)
	a, _, _ := start(t, writeConfig(t, fmt.Sprintf(`providers:
  - {name: corp, issuer: "%[1]s", jwks_uri: "%[1]s/.well-known/jwks.json", audiences: [x]}
routes:
  - {name: r, authenticate: {jwt: {providers: [corp]}}, upstream: {remove: {}}}
`, idp.URL())))
	get := func() (int, map[string]any) {
		resp, err := http.Get("http://" + a.HTTPAddr() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	code, body := get()
	if code != http.StatusServiceUnavailable || body["status"] != "not ready" {
		t.Fatalf("readyz = %d %v, want 503 not ready", code, body)
	}
	if m, _ := body["missing"].([]any); len(m) != 1 || m[0] != "provider corp: keys not loaded" {
		t.Fatalf("missing = %v", body["missing"])
	}
	if resp, err := http.Get("http://" + a.HTTPAddr() + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz must stay 200 while not ready: %v", resp)
	}
	idp.SetDown(false)
	testkit.WaitFor(t, "readiness after the JWKS came up", 10*time.Second, 50*time.Millisecond, func() bool {
		code, _ := get()
		return code == http.StatusOK
	})
}

// TestStopDrainsInFlightRequests: a forward-auth request waiting on a slow IdP when the server
// is told to stop still gets its answer; Run returns nil afterwards.
func TestStopDrainsInFlightRequests(t *testing.T) {
	idp, err := testenv.NewIdP("", map[string]string{"gw": "gw-secret"})
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	idp.SetDelay(500 * time.Millisecond)
	a, cancel, done := start(t, writeConfig(t, fmt.Sprintf(`routes:
  - name: f
    authenticate: {none: {}}
    upstream: {fetch: {token_url: "%s", client_id: gw, client_secret: gw-secret}}
`, idp.TokenURL())))
	result := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + a.HTTPAddr() + "/authz/x")
		if err != nil {
			result <- -1
			return
		}
		resp.Body.Close()
		result <- resp.StatusCode
	}()
	testkit.WaitFor(t, "the IdP request", 5*time.Second, 5*time.Millisecond, func() bool { return idp.TokenRequests.Load() > 0 })
	cancel() // as SIGTERM does
	if got := <-result; got != http.StatusOK {
		t.Fatalf("in-flight request got %d, want 200", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	done <- nil // for the cleanup
}
