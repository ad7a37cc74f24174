package app_test

import (
	"fmt"
	"net/http"
	"strings"
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

	tokens := concurrentChecks(t, []string{a1.HTTPAddr(), a2.HTTPAddr()}, "/x", "", 20)
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

// TestReplicasShareExchangedTokensThroughRedis: with cache.redis, two replicas make one RFC 8693
// exchange between them for one caller token, however many concurrent Checks carry it and
// whichever replica they reach; another caller token is another exchange.
func TestReplicasShareExchangedTokensThroughRedis(t *testing.T) {
	redisAddr := testkit.StartRedis(t).Addr()
	idp, err := testenv.NewIdP("", map[string]string{"gw": "gw-secret-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	idp.SetDelay(100 * time.Millisecond)                          // concurrent cold requests overlap
	keyFile := writeConfig(t, "0123456789abcdef0123456789abcdef") // 32 raw bytes (test value)
	cfg := fmt.Sprintf(`providers:
  - {name: corp, issuer: "%[1]s", jwks_uri: "%[1]s/.well-known/jwks.json", audiences: ["api://gateway"]}
routes:
  - name: orders
    authenticate: {jwt: {providers: [corp]}}
    upstream: {token_exchange: {token_url: "%[2]s", client_id: gw, client_secret: gw-secret-0123456789, audience: "api://orders"}}
cache:
  redis: {addr: "%[3]s", key_prefix: "tg-te:", encryption_key_file: "%[4]s"}
`, idp.URL(), idp.TokenURL(), redisAddr, keyFile)
	a1, _, _ := start(t, writeConfig(t, cfg))
	a2, _, _ := start(t, writeConfig(t, cfg))
	testenvWaitReady(t, a1.HTTPAddr())
	testenvWaitReady(t, a2.HTTPAddr())

	for round, sub := range []string{"alice", "bob"} {
		caller, err := idp.CallerToken(map[string]any{"aud": "api://gateway", "sub": sub})
		if err != nil {
			t.Fatal(err)
		}
		tokens := concurrentChecks(t, []string{a1.HTTPAddr(), a2.HTTPAddr()}, "/orders/1", caller, 20)
		if n := idp.TokenRequests.Load(); n != int64(round+1) {
			t.Fatalf("%s: %d exchanges at the IdP so far, want %d (one per caller token for the fleet)", sub, n, round+1)
		}
		if len(tokens) != 1 {
			t.Fatalf("%s: replicas handed out %d different tokens: %v", sub, len(tokens), tokens)
		}
		for tok := range tokens {
			if !strings.HasPrefix(tok, "Bearer exchanged-"+sub+"-") {
				t.Fatalf("%s: upstream Authorization %q", sub, tok)
			}
		}
	}
}

// concurrentChecks sends n forward-auth Checks of path with the Bearer token (none when "") at
// once, spread over the servers at addrs in turn, and counts the upstream Authorization values
// they answer.
func concurrentChecks(t *testing.T, addrs []string, path, bearer string, n int) map[string]int {
	t.Helper()
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", "http://"+addrs[i%len(addrs)]+"/authz"+path, nil)
			if bearer != "" {
				req.Header.Set("Authorization", "Bearer "+bearer)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			got[resp.Header.Get("Authorization")]++
			mu.Unlock()
		})
	}
	wg.Wait()
	return got
}
