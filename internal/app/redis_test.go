package app_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/testenv"
)

// TestReplicasShareFetchedTokensThroughRedis: two tokengate servers configured with the same
// cache.redis make one IdP call between them for concurrent cold requests, and hand out the
// same token.
func TestReplicasShareFetchedTokensThroughRedis(t *testing.T) {
	redisAddr := testkit.StartRedis(t).Addr()
	idp, err := testenv.NewIdP("", map[string]string{"gw": "gw-secret"})
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	idp.SetDelay(100 * time.Millisecond)                          // a realistic IdP: concurrent cold requests overlap
	keyFile := writeConfig(t, "0123456789abcdef0123456789abcdef") // 32 raw bytes (test value)
	cfg := fmt.Sprintf(`routes:
  - name: f
    authenticate: {none: {}}
    upstream: {fetch: {token_url: "%s", client_id: gw, client_secret: gw-secret}}
cache:
  redis: {addr: "%s", key_prefix: "tg-test:", encryption_key_file: "%s"}
`, idp.TokenURL(), redisAddr, keyFile)
	a1, _, _ := start(t, writeConfig(t, cfg))
	a2, _, _ := start(t, writeConfig(t, cfg))

	var mu sync.Mutex
	tokens := map[string]int{}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := a1.HTTPAddr()
			if i%2 == 1 {
				addr = a2.HTTPAddr()
			}
			resp, err := http.Get("http://" + addr + "/authz/x")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			tokens[resp.Header.Get("Authorization")]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if n := idp.TokenRequests.Load(); n != 1 {
		t.Fatalf("%d IdP calls from two replicas, want 1", n)
	}
	if len(tokens) != 1 {
		t.Fatalf("replicas handed out %d different tokens: %v", len(tokens), tokens)
	}
	for tok := range tokens {
		if tok == "" {
			t.Fatal("no token handed out")
		}
	}
}
