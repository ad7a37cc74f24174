package introspect_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/introspect"
	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/internal/upstream"
	"github.com/tokengate/tokengate/internal/upstream/redisstore"
)

// countingIDP is an RFC 7662 endpoint answering body to every call, counting them.
func countingIDP(t *testing.T, body *atomic.Pointer[string]) (*httptest.Server, *atomic.Int64) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(*body.Load()))
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

// TestSharedAnswers: replicas sharing one Redis (sealed) make one introspection call per token
// for the fleet (RFC 7662 §4: caching spares the server); a shared answer lives no longer than the
// reading replica's own rules allow; an unsealed store is not used; Redis down, each replica
// introspects alone.
func TestSharedAnswers(t *testing.T) {
	redis := testkit.StartRedis(t)
	now := time.Now().Truncate(time.Second)
	var clk atomic.Int64
	clk.Store(now.UnixNano())
	nowf := func() time.Time { return time.Unix(0, clk.Load()) }
	var body atomic.Pointer[string]
	active := `{"active":true,"sub":"alice","scope":"orders.read","exp":` + strconv.FormatInt(now.Add(time.Hour).Unix(), 10) + `}`
	body.Store(&active)
	srv, calls := countingIDP(t, &body)
	key := bytes.Repeat([]byte{8}, 32)
	replica := func(ttl time.Duration, enc []byte) *introspect.Client {
		t.Helper()
		store, err := redisstore.New(redisstore.Options{Addr: redis.Addr(), EncryptionKey: enc, Now: nowf,
			Timeout: 200 * time.Millisecond, RetryInterval: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		c, err := introspect.New(introspect.Config{Provider: "curity", URL: srv.URL + "/introspect", ClientID: "gw",
			Auth: upstream.ClientSecretAuth{ClientID: "gw", Secret: "s"}, AllowHTTP: true, CacheTTL: ttl, NegativeTTL: 5 * time.Second, Now: nowf, Shared: store})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ask := func(c *introspect.Client, tok string) *introspect.Answer {
		t.Helper()
		ans, err := c.Introspect(context.Background(), tok, sha256.Sum256([]byte(tok)))
		if err != nil {
			t.Fatal(err)
		}
		return ans
	}
	a, b := replica(time.Minute, key), replica(10*time.Second, key)

	ans := ask(a, "opaque-1")
	if !ans.Active || calls.Load() != 1 {
		t.Fatalf("replica A: active=%v calls=%d", ans.Active, calls.Load())
	}
	ans = ask(b, "opaque-1")
	if !ans.Active || ans.Claims["sub"] != "alice" || ans.Expiry.Unix() != now.Add(time.Hour).Unix() {
		t.Fatalf("replica B's shared answer: %+v", ans)
	}
	if calls.Load() != 1 {
		t.Fatalf("replica B called the endpoint: %d calls, want 1", calls.Load())
	}
	// B's cache_ttl is 10 s although A shared the answer for a minute: after 11 s B asks again.
	clk.Add(int64(11 * time.Second))
	ask(b, "opaque-1")
	if calls.Load() != 2 {
		t.Fatalf("replica B kept a shared answer past its own cache_ttl: %d calls, want 2", calls.Load())
	}

	// An inactive answer is shared too, for negative_ttl.
	inactive := `{"active":false}`
	body.Store(&inactive)
	if ask(a, "opaque-2").Active || ask(b, "opaque-2").Active || calls.Load() != 3 {
		t.Fatalf("inactive answer: calls=%d, want 3", calls.Load())
	}

	// A replica without an encryption key neither reads nor writes shared answers.
	plain := replica(time.Minute, nil)
	body.Store(&active)
	ask(plain, "opaque-1")
	if calls.Load() != 4 {
		t.Fatalf("an unsealed store served an answer: calls=%d, want 4", calls.Load())
	}

	// Redis down: each replica introspects alone, and caches locally.
	redis.Kill()
	before := calls.Load()
	c1, c2 := replica(time.Minute, key), replica(time.Minute, key)
	for range 3 {
		if !ask(c1, "opaque-3").Active || !ask(c2, "opaque-3").Active {
			t.Fatal("inactive with Redis down")
		}
	}
	if n := calls.Load() - before; n != 2 {
		t.Fatalf("Redis down: %d calls, want one per replica", n)
	}
}
