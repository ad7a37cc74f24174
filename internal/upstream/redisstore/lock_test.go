package redisstore

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/internal/upstream"
)

// TestPlantedLock covers issue 9, finding 11 (docs/upstream.md#scale-out-replicas-share-tokens-through-redis): a lock
// never blocks longer than its lease. A lock key planted by someone with Redis access (or left
// by a Redis that lost its TTL) used to block the route forever (503, no IdP call at all).
//
//   - Without an expiry (PTTL -1) it is taken over at once: concurrent callers on three
//     replicas all get the token, from exactly one IdP call (the takeover is atomic in Redis).
//   - With an expiry far beyond the route's timeout, the waiting replica fetches itself once its
//     wait has passed the route's timeout: the IdP is called once and the route serves again.
func TestPlantedLock(t *testing.T) {
	rp := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rp.Addr()})
	t.Cleanup(func() { rdb.Close() })

	tests := []struct {
		name     string
		expiry   time.Duration // of the planted key; 0: none
		replicas int
		timeout  time.Duration // the route's timeout
		// noError: every caller gets the token (the lock is taken over without waiting).
		noError bool
	}{
		{name: "without expiry", replicas: 3, timeout: 2 * time.Second, noError: true},
		{name: "held past the route's timeout", expiry: 10 * time.Minute, replicas: 1, timeout: 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := newIDP(t, 100)
			clk := newClock()
			fleet := newFleet(t, tt.replicas, rp.Addr(), clk, nil)
			cc := i.cc(fmt.Sprint("planted-", tt.replicas))
			cc.Timeout = tt.timeout
			lock := fleet[0].store.name("lock:", upstream.CredentialsKey(upstream.ModeFetch, cc))
			if err := rdb.Set(bg, lock, "x", tt.expiry).Err(); err != nil {
				t.Fatal(err)
			}
			if ttl, _ := rdb.PTTL(bg, lock).Result(); (tt.expiry == 0) != (ttl == -1) {
				t.Fatalf("planted lock PTTL %v", ttl)
			}

			const perReplica = 10
			var wg sync.WaitGroup
			errs := make([]error, tt.replicas*perReplica)
			toks := make([]string, len(errs))
			for k, r := range fleet {
				for j := range perReplica {
					wg.Go(func() {
						tok, err := r.cache.Fetch(bg, "partner", cc)
						toks[k*perReplica+j], errs[k*perReplica+j] = tok.AccessToken, err
					})
				}
			}
			wg.Wait()
			for k, err := range errs {
				switch {
				case err == nil && toks[k] != "upstream-token-1":
					t.Fatalf("call %d: token %q", k, toks[k])
				case err != nil && (tt.noError || !errors.Is(err, upstream.ErrUnavailable)):
					t.Fatalf("call %d: %v", k, err)
				}
			}
			// The fetch happens (once), and every replica then serves the token.
			testkit.WaitFor(t, "the waiting replica to fetch itself", 10*time.Second, 5*time.Millisecond, func() bool { return i.n() >= 1 })
			for _, r := range fleet {
				testkit.WaitFor(t, "the route to serve again", 10*time.Second, 5*time.Millisecond, func() bool {
					tok, err := r.cache.Fetch(bg, "partner", cc)
					return err == nil && tok.AccessToken == "upstream-token-1"
				})
			}
			if i.n() != 1 {
				t.Fatalf("IdP calls = %d, want 1", i.n())
			}
			if tt.expiry == 0 {
				// The planted key was replaced by a real lease and released.
				if n, _ := rdb.Exists(bg, lock).Result(); n != 0 {
					v, _ := rdb.Get(bg, lock).Result()
					t.Fatalf("lock key still there (%q)", v)
				}
			}
		})
	}
}

// TestTryLockTakesOverKeysWithoutExpiry: at the Store level, a lock key without an expiry (of
// any type) is taken over as a real lease; a key with an expiry is a lease and is respected.
func TestTryLockTakesOverKeysWithoutExpiry(t *testing.T) {
	rp := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rp.Addr()})
	t.Cleanup(func() { rdb.Close() })
	clk := newClock()
	a := newReplica(t, rp.Addr(), clk, func(o *Options) { o.LockTTL = 5 * time.Second })
	tests := []struct {
		name   string
		plant  func(name string) error
		held   bool
		result string // the `lock` operation's metric result
	}{
		{"free", func(string) error { return nil }, true, "acquired"},
		{"string without expiry", func(n string) error { return rdb.Set(bg, n, "x", 0).Err() }, true, "abandoned"},
		{"hash without expiry", func(n string) error { return rdb.HSet(bg, n, "f", "v").Err() }, true, "abandoned"},
		{"string with an expiry", func(n string) error { return rdb.Set(bg, n, "x", time.Minute).Err() }, false, "busy"},
	}
	for k, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := upstream.CredentialsKey(upstream.ModeFetch, upstream.ClientCredentials{TokenURL: "https://x", ClientID: fmt.Sprint("takeover-", k)})
			name := a.store.name("lock:", key)
			if err := tt.plant(name); err != nil {
				t.Fatal(err)
			}
			before := testkit.CounterValue(t, a.m, "tokengate_redis_operations_total", map[string]string{"op": "lock", "result": tt.result})
			unlock, held, err := a.store.TryLock(bg, key)
			if err != nil || held != tt.held {
				t.Fatalf("TryLock: held %v, %v; want held %v", held, err, tt.held)
			}
			if got := testkit.CounterValue(t, a.m, "tokengate_redis_operations_total", map[string]string{"op": "lock", "result": tt.result}); got != before+1 {
				t.Fatalf("lock result %q counted %v times", tt.result, got-before)
			}
			if !held {
				if ttl, _ := rdb.PTTL(bg, name).Result(); ttl <= 5*time.Second {
					t.Fatalf("a lease with an expiry was touched (PTTL %v)", ttl)
				}
				return
			}
			// Ours now: a lease with an expiry, which a second TryLock respects.
			if ttl, _ := rdb.PTTL(bg, name).Result(); ttl <= 0 || ttl > 5*time.Second {
				t.Fatalf("lease PTTL %v", ttl)
			}
			if _, held2, err := a.store.TryLock(bg, key); err != nil || held2 {
				t.Fatalf("second TryLock: %v %v", held2, err)
			}
			unlock()
			if n, _ := rdb.Exists(bg, name).Result(); n != 0 {
				t.Fatal("lease not released")
			}
		})
	}
}
