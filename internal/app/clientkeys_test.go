package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
)

// TestReloadKeepsClientKeySets: a private_key_jwt client's jwks_uri key set (RFC 7523 §2.2) is
// carried over by a reload that leaves the client's id and jwks_uri as they were, as provider
// key sets are (docs/operations.md#signals-and-reload): the reload fetches nothing, and a JWKS
// endpoint that fails meanwhile does not lock the client out. A client whose jwks_uri changed
// gets a new set, fetched anew.
func TestReloadKeepsClientKeySets(t *testing.T) {
	key, err := jose.GenerateKey("ES256", "pk-1")
	if err != nil {
		t.Fatal(err)
	}
	set, err := jose.PublicJWKS([]*jose.SigningKey{key})
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int64
	var failing atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if failing.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(set)
	}))
	defer srv.Close()

	const issuerURL = "https://tokengate.test"
	config := func(scopes, jwksPath string) string {
		return fmt.Sprintf(`issuer:
  issuer_url: %s
  signing_keys: [{kid: k1, alg: ES256, generate: true}]
  clients: [{client_id: pk, jwks_uri: "%s%s", scopes: [%s], audiences: [orders]}]
routes:
  - {name: r, authenticate: {none: {}}, upstream: {remove: {}}}
`, issuerURL, srv.URL, jwksPath, scopes)
	}
	path := writeConfig(t, config("read", "/jwks"))
	a, _, _ := start(t, path)

	n := 0
	token := func() int {
		t.Helper()
		n++
		now := time.Now()
		as, err := key.Sign(map[string]any{"iss": "pk", "sub": "pk", "aud": issuerURL, "jti": fmt.Sprintf("a-%d-%d", now.UnixNano(), n),
			"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}, "JWT")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.PostForm("http://"+a.HTTPAddr()+"/oauth2/token", url.Values{"grant_type": {"client_credentials"},
			"client_id": {"pk"}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {as}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := token(); got != http.StatusOK {
		t.Fatalf("token before the reload: %d, want 200", got)
	}
	before := fetches.Load()
	if before < 1 {
		t.Fatalf("%d JWKS fetches before the reload", before)
	}

	failing.Store(true)
	reload := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := a.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	reload(config("read, write", "/jwks")) // the client changes, its key set does not
	if got := token(); got != http.StatusOK {
		t.Errorf("token after a reload with the JWKS endpoint failing: %d, want 200 (the key set carried over)", got)
	}
	if got := fetches.Load() - before; got != 0 {
		t.Errorf("%d JWKS fetches by a reload that kept the client's jwks_uri, want 0", got)
	}
	reload(config("read, write", "/jwks")) // and again: the set passed to the second generation is kept too
	if got := token(); got != http.StatusOK {
		t.Errorf("token after a second reload: %d, want 200", got)
	}

	// A new jwks_uri is a new key set: fetched, and (failing) no keys.
	before = fetches.Load()
	reload(config("read, write", "/jwks?v=2"))
	if got := token(); got == http.StatusOK {
		t.Errorf("token after the jwks_uri changed to a failing endpoint: 200, want a refusal")
	}
	if fetches.Load() == before {
		t.Errorf("the new jwks_uri was not fetched")
	}
}
