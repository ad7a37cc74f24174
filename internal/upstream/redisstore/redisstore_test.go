package redisstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/internal/upstream"
)

// Concurrent cold calls across a fleet of 2 and 5 replicas make exactly one IdP call, and every
// replica hands out the same token; then each refresh-ahead across the fleet makes one call.
func TestFleetSingleFlightAndRefresh(t *testing.T) {
	rp := testkit.StartRedis(t)
	for _, n := range []int{2, 5} {
		t.Run(fmt.Sprintf("%d replicas", n), func(t *testing.T) {
			i := newIDP(t, 100)
			release := make(chan struct{})
			i.set(func(w http.ResponseWriter, r *http.Request, k int64) {
				<-release
				i.ok(100)(w, r, k)
			})
			clk := newClock()
			fleet := newFleet(t, n, rp.Addr(), clk, nil)
			cc := i.cc(fmt.Sprint("fleet-", n))
			const perReplica = 20
			var wg sync.WaitGroup
			toks := make([]string, n*perReplica)
			errs := make([]error, n*perReplica)
			for k, r := range fleet {
				for j := range perReplica {
					wg.Go(func() {
						tok, err := r.cache.Fetch(bg, "partner", cc)
						toks[k*perReplica+j], errs[k*perReplica+j] = tok.AccessToken, err
					})
				}
			}
			// Hold the IdP until every other replica is waiting on the lock holder.
			testkit.WaitFor(t, "replicas waiting on the lock", 5*time.Second, 2*time.Millisecond, func() bool {
				waiting := 0
				for _, r := range fleet {
					if testkit.CounterValue(t, r.m, "tokengate_redis_operations_total", map[string]string{"op": "lock", "result": "busy"}) > 0 {
						waiting++
					}
				}
				return i.n() == 1 && waiting == n-1
			})
			close(release)
			wg.Wait()
			for k := range toks {
				if errs[k] != nil || toks[k] != "upstream-token-1" {
					t.Fatalf("call %d: %q %v", k, toks[k], errs[k])
				}
			}
			cold := i.n()
			t.Logf("%d replicas × %d concurrent cold calls: %d IdP call(s)", n, perReplica, cold)
			if cold != 1 {
				t.Fatalf("IdP calls = %d, want 1", cold)
			}

			// Refresh ahead, three cycles: past every replica's refresh point, each replica is
			// asked; one replica refreshes for all.
			prev := "upstream-token-1"
			for cycle := 1; cycle <= 3; cycle++ {
				clk.Advance(85 * time.Second)
				for _, r := range fleet {
					tok, err := r.cache.Fetch(bg, "partner", cc)
					if err != nil || tok.AccessToken != prev {
						t.Fatalf("cycle %d: during refresh got %q %v, want the current token", cycle, tok.AccessToken, err)
					}
				}
				var next string
				testkit.WaitFor(t, "every replica to hold the refreshed token", 5*time.Second, 2*time.Millisecond, func() bool {
					for _, r := range fleet {
						tok, err := r.cache.Fetch(bg, "partner", cc)
						if err != nil || tok.AccessToken == prev || (next != "" && tok.AccessToken != next) {
							return false
						}
						next = tok.AccessToken
					}
					return true
				})
				if got := i.n() - cold; got != int64(cycle) {
					t.Fatalf("after refresh cycle %d: %d refresh IdP calls, want %d", cycle, got, cycle)
				}
				prev = next
			}
			t.Logf("%d replicas: 3 refresh-ahead cycles: %d IdP call(s)", n, i.n()-cold)
		})
	}
}

// A lock holder that dies mid-fetch (its IdP call hangs): the others still get a token within
// the timeout, from one more IdP call.
func TestLockHolderDies(t *testing.T) {
	rp := testkit.StartRedis(t)
	for _, how := range []string{"crash (connections gone, lease lapses)", "canceled (its flight is canceled, lock released)"} {
		t.Run(how, func(t *testing.T) {
			i := newIDP(t, 100)
			i.set(func(w http.ResponseWriter, r *http.Request, n int64) {
				if n == 1 {
					select { // the holder's IdP call hangs
					case <-r.Context().Done():
					case <-i.stop:
					}
					return
				}
				i.ok(100)(w, r, n)
			})
			clk := newClock()
			fleet := newFleet(t, 3, rp.Addr(), clk, nil) // lease 300 ms
			cc := i.cc("holder-dies-" + how[:5])
			cc.Timeout = 1500 * time.Millisecond
			holderErr := make(chan error, 1)
			go func() {
				_, err := fleet[0].cache.Fetch(bg, "partner", cc)
				holderErr <- err
			}()
			testkit.WaitFor(t, "the holder's IdP call", 5*time.Second, 2*time.Millisecond, func() bool { return i.n() == 1 })
			type res struct {
				tok  string
				err  error
				took time.Duration
			}
			results := make(chan res, 2)
			for _, r := range fleet[1:] {
				go func() {
					start := time.Now()
					tok, err := r.cache.Fetch(bg, "partner", cc)
					results <- res{tok.AccessToken, err, time.Since(start)}
				}()
			}
			testkit.WaitFor(t, "the others to wait on the lock", 5*time.Second, 2*time.Millisecond, func() bool {
				for _, r := range fleet[1:] {
					if testkit.CounterValue(t, r.m, "tokengate_redis_operations_total", map[string]string{"op": "lock", "result": "busy"}) == 0 {
						return false
					}
				}
				return true
			})
			if strings.HasPrefix(how, "crash") {
				_ = fleet[0].store.Close()
			} else {
				fleet[0].cache.Close()
			}
			var toks []string
			for range 2 {
				r := <-results
				if r.err != nil {
					t.Fatalf("survivor: %v", r.err)
				}
				if r.took > cc.Timeout {
					t.Fatalf("survivor waited %v, more than the %v timeout", r.took, cc.Timeout)
				}
				toks = append(toks, r.tok)
				t.Logf("survivor got a token after %v (timeout %v)", r.took.Round(time.Millisecond), cc.Timeout)
			}
			if toks[0] != toks[1] || toks[0] != "upstream-token-2" {
				t.Fatalf("survivors got %q", toks)
			}
			if i.n() != 2 {
				t.Fatalf("IdP calls = %d, want 2 (the hung one and one takeover)", i.n())
			}
			if err := <-holderErr; !errors.Is(err, upstream.ErrUnavailable) {
				t.Fatalf("holder: %v", err)
			}
		})
	}
}

// Redis killed mid-run: no call fails while local tokens are valid, fetches go on locally, the
// outage is logged once per replica; Redis restarted: sharing resumes.
func TestRedisOutageAndRecovery(t *testing.T) {
	rp := testkit.StartRedis(t)
	i := newIDP(t, 100)
	clk := newClock()
	fleet := newFleet(t, 2, rp.Addr(), clk, nil)
	cc := i.cc("outage")
	for _, r := range fleet {
		if _, err := r.cache.Fetch(bg, "partner", cc); err != nil {
			t.Fatal(err)
		}
	}
	if i.n() != 1 {
		t.Fatalf("shared cold start: %d IdP calls", i.n())
	}

	rp.Kill()
	// Local tokens keep serving; many calls, none fails.
	for range 50 {
		for _, r := range fleet {
			if tok, err := r.cache.Fetch(bg, "partner", cc); err != nil || tok.AccessToken != "upstream-token-1" {
				t.Fatalf("while Redis is down: %v", err)
			}
		}
	}
	// Past the refresh point: each replica refreshes locally (Redis cannot coordinate).
	clk.Advance(85 * time.Second)
	testkit.WaitFor(t, "local refreshes", 5*time.Second, 2*time.Millisecond, func() bool {
		for _, r := range fleet {
			tok, err := r.cache.Fetch(bg, "partner", cc)
			if err != nil {
				t.Fatalf("during local refresh: %v", err)
			}
			if tok.AccessToken == "upstream-token-1" {
				return false
			}
		}
		return true
	})
	// A cold key while Redis is down: fetched locally by each replica, quickly.
	cold := i.cc("outage-cold")
	for _, r := range fleet {
		start := time.Now()
		if _, err := r.cache.Fetch(bg, "partner", cold); err != nil {
			t.Fatalf("cold key while Redis is down: %v", err)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("cold fetch took %v with Redis down", took)
		}
	}
	for k, r := range fleet {
		if n := strings.Count(r.log.String(), "redis unavailable"); n != 1 {
			t.Fatalf("replica %d logged the outage %d times:\n%s", k, n, r.log.String())
		}
	}

	// Redis back: once each replica has seen it answer, a new cold key costs one IdP call.
	rp.Restart()
	testkit.WaitFor(t, "replicas to reconnect", 10*time.Second, 2*time.Millisecond, func() bool {
		for _, r := range fleet {
			if r.store.Ping(bg) != nil {
				return false
			}
		}
		return true
	})
	before := i.n()
	again := i.cc("after-restart")
	var wg sync.WaitGroup
	toks := make([]string, len(fleet)*10)
	for k, r := range fleet {
		for j := range 10 {
			wg.Go(func() {
				tok, err := r.cache.Fetch(bg, "partner", again)
				if err != nil {
					t.Errorf("after restart: %v", err)
				}
				toks[k*10+j] = tok.AccessToken
			})
		}
	}
	wg.Wait()
	if got := i.n() - before; got != 1 {
		t.Fatalf("after Redis came back: %d IdP calls for a cold key, want 1", got)
	}
	for _, tok := range toks {
		if tok != toks[0] {
			t.Fatalf("replicas disagree after restart: %q", toks)
		}
	}
	for k, r := range fleet {
		if !strings.Contains(r.log.String(), "redis available again") {
			t.Fatalf("replica %d did not log the recovery", k)
		}
	}
}

// A Redis that accepts connections but never answers: every call is bounded by the timeout, the
// token is fetched locally, and later calls fail fast.
func TestSlowRedis(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	i := newIDP(t, 100)
	clk := newClock()
	r := newReplica(t, l.Addr().String(), clk, func(o *Options) { o.Timeout = 500 * time.Millisecond; o.RetryInterval = time.Minute })
	start := time.Now()
	if _, err := r.cache.Fetch(bg, "partner", i.cc("slow-1")); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("first fetch with a hung Redis took %v", took)
	}
	// Consulting the hung Redis again would cost the 500 ms timeout: the second fetch must not
	// try Redis at all (no operation counted, whatever its result) and go to the IdP at once.
	ops := testkit.CounterValue(t, r.m, "tokengate_redis_operations_total", nil)
	calls := i.n()
	if _, err := r.cache.Fetch(bg, "partner", i.cc("slow-2")); err != nil {
		t.Fatal(err)
	}
	if got := testkit.CounterValue(t, r.m, "tokengate_redis_operations_total", nil); got != ops {
		t.Fatalf("second fetch did not fail fast past Redis: %v Redis operations, want none", got-ops)
	}
	if i.n() != calls+1 {
		t.Fatalf("second fetch: %d IdP calls, want 1", i.n()-calls)
	}
	if n := strings.Count(r.log.String(), "redis unavailable"); n != 1 {
		t.Fatalf("outage logged %d times", n)
	}
	if !strings.Contains(r.log.String(), `"error":"timeout"`) {
		t.Fatalf("log: %s", r.log.String())
	}
}

// Stored keys sit under key_prefix and hold no secret or client id; values expire with the token;
// with an encryption key the value does not contain the token, other keys cannot read it, and a
// plaintext value injected into Redis is ignored.
func TestStoredKeysAndEncryption(t *testing.T) {
	rp := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rp.Addr()})
	t.Cleanup(func() { rdb.Close() })
	encKey := bytes.Repeat([]byte{7}, 32)
	otherKey := bytes.Repeat([]byte{9}, 32)

	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprint("encrypted=", enc), func(t *testing.T) {
			if err := rdb.FlushAll(bg).Err(); err != nil {
				t.Fatal(err)
			}
			i := newIDP(t, 600)
			clk := newClock()
			mod := func(o *Options) {
				o.KeyPrefix = "acme:tg:"
				if enc {
					o.EncryptionKey = encKey
				}
			}
			a := newReplica(t, rp.Addr(), clk, mod)
			cc := i.cc("client-with-a-name")
			tok, err := a.cache.Fetch(bg, "partner", cc)
			if err != nil {
				t.Fatal(err)
			}
			keys, err := rdb.Keys(bg, "*").Result()
			if err != nil || len(keys) != 1 {
				t.Fatalf("keys %q %v", keys, err)
			}
			k := keys[0]
			if !strings.HasPrefix(k, "acme:tg:tok:") {
				t.Fatalf("key %q not under the prefix", k)
			}
			for _, s := range []string{cc.ClientSecret, cc.ClientID, tok.AccessToken, fmt.Sprintf("%x", sha256.Sum256([]byte(cc.ClientSecret)))} {
				if strings.Contains(k, s) {
					t.Fatalf("key %q contains %q", k, s)
				}
			}
			ttl, _ := rdb.PTTL(bg, k).Result()
			if ttl <= 590*time.Second || ttl > 600*time.Second {
				t.Fatalf("TTL %v, want the token's 600 s", ttl)
			}
			val, _ := rdb.Get(bg, k).Bytes()
			if bytes.Contains(val, []byte(cc.ClientSecret)) {
				t.Fatal("value holds the secret")
			}
			if enc == bytes.Contains(val, []byte(tok.AccessToken)) {
				t.Fatalf("encrypted=%v but value contains token: %v", enc, !enc)
			}
			if !enc {
				if !strings.Contains(a.log.String(), "without an encryption key") {
					t.Fatal("no warning without an encryption key")
				}
				return
			}
			if strings.Contains(a.log.String(), "without an encryption key") {
				t.Fatal("warning despite the encryption key")
			}
			// Another replica with the same key shares the token.
			b := newReplica(t, rp.Addr(), clk, mod)
			if got, err := b.cache.Fetch(bg, "partner", cc); err != nil || got.AccessToken != tok.AccessToken || i.n() != 1 {
				t.Fatalf("same key: %q %v calls %d", got.AccessToken, err, i.n())
			}
			// A replica with another key cannot use it.
			c := newReplica(t, rp.Addr(), clk, func(o *Options) { mod(o); o.EncryptionKey = otherKey })
			if got, err := c.cache.Fetch(bg, "partner", cc); err != nil || got.AccessToken == tok.AccessToken || i.n() != 2 {
				t.Fatalf("other key: %q %v calls %d", got.AccessToken, err, i.n())
			}
			// A value moved to another key name does not open; a plaintext value is ignored.
			d := newReplica(t, rp.Addr(), clk, mod)
			cc2 := i.cc("another-client")
			name2 := d.store.name("tok:", upstream.CredentialsKey(upstream.ModeFetch, cc2))
			if err := rdb.Set(bg, name2, val, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			if got, _ := d.cache.Fetch(bg, "partner", cc2); got.AccessToken == tok.AccessToken {
				t.Fatal("a value copied to another key was accepted")
			}
			cc3 := i.cc("third-client")
			name3 := d.store.name("tok:", upstream.CredentialsKey(upstream.ModeFetch, cc3))
			plain := append([]byte{formatPlain}, make([]byte, 16)...)
			plain = append(plain, "injected"...)
			if err := rdb.Set(bg, name3, plain, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			if got, _ := d.cache.Fetch(bg, "partner", cc3); got.AccessToken == "injected" {
				t.Fatal("an injected plaintext value was accepted")
			}
		})
	}
}

// Username/password authentication (ACL): the right ones share; wrong ones fall back to local
// fetching and log the outage without the password.
func TestRedisAuth(t *testing.T) {
	rp := testkit.StartRedis(t, "--requirepass", "redis-pw-123", "--user", "tg", "on", ">tg-pw-456", "~tg-test:*", "+@all")
	i := newIDP(t, 100)
	clk := newClock()
	good := newFleet(t, 2, rp.Addr(), clk, func(o *Options) { o.Username, o.Password = "tg", "tg-pw-456" })
	cc := i.cc("auth")
	for _, r := range good {
		if _, err := r.cache.Fetch(bg, "partner", cc); err != nil {
			t.Fatal(err)
		}
	}
	if i.n() != 1 {
		t.Fatalf("authenticated fleet: %d IdP calls", i.n())
	}
	legacy := newReplica(t, rp.Addr(), clk, func(o *Options) { o.Password = "redis-pw-123" }) // requirepass (default user)
	if err := legacy.store.Ping(bg); err != nil {
		t.Fatalf("default user: %v", err)
	}
	bad := newReplica(t, rp.Addr(), clk, func(o *Options) { o.Username, o.Password = "tg", "wrong-pw-789" })
	if _, err := bad.cache.Fetch(bg, "partner", cc); err != nil {
		t.Fatalf("wrong password must fall back to a local fetch: %v", err)
	}
	if i.n() != 2 {
		t.Fatalf("IdP calls %d", i.n())
	}
	if l := bad.log.String(); !strings.Contains(l, "redis unavailable") || strings.Contains(l, "wrong-pw-789") {
		t.Fatalf("log: %s", l)
	}
}

// The lock is a lease renewed by its holder and released only by its owner.
func TestLockLease(t *testing.T) {
	rp := testkit.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rp.Addr()})
	t.Cleanup(func() { rdb.Close() })
	clk := newClock()
	a := newReplica(t, rp.Addr(), clk, func(o *Options) { o.LockTTL = 150 * time.Millisecond })
	key := upstream.CredentialsKey(upstream.ModeFetch, upstream.ClientCredentials{TokenURL: "https://x", ClientID: "lease"})
	name := a.store.name("lock:", key)

	unlock, held, err := a.store.TryLock(bg, key)
	if err != nil || !held {
		t.Fatalf("first lock: %v %v", held, err)
	}
	if _, held2, err := a.store.TryLock(bg, key); err != nil || held2 {
		t.Fatalf("second lock: %v %v", held2, err)
	}
	// The holder renews the lease every ttl/3: watched in Redis, its remaining time goes back
	// up (a renewal) again and again, and the lock never disappears meanwhile. Three renewals
	// carry it past its first 150 ms lease, counted rather than slept for.
	renewals, last := 0, time.Duration(-1)
	testkit.WaitFor(t, "three lease renewals", 10*time.Second, time.Millisecond, func() bool {
		ttl, err := rdb.PTTL(bg, name).Result()
		if err != nil || ttl <= 0 {
			t.Fatalf("lease not renewed: lock gone after %d renewals (PTTL %v, %v)", renewals, ttl, err)
		}
		if last >= 0 && ttl > last {
			renewals++
		}
		last = ttl
		return renewals >= 3
	})
	unlock()
	unlock() // idempotent
	if n, _ := rdb.Exists(bg, name).Result(); n != 0 {
		t.Fatal("not released")
	}

	// A holder whose lease lapsed must not delete the next holder's lock.
	unlock, held, err = a.store.TryLock(bg, key)
	if err != nil || !held {
		t.Fatal(err)
	}
	if err := rdb.Set(bg, name, "someone-else", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	unlock()
	if v, _ := rdb.Get(bg, name).Result(); v != "someone-else" {
		t.Fatalf("another owner's lock was deleted (now %q)", v)
	}
}

func TestNewOptions(t *testing.T) {
	badCA := []byte("not pem")
	tests := []struct {
		name string
		o    Options
		err  string
	}{
		{"addr", Options{Addr: "127.0.0.1:1"}, ""},
		{"sentinel", Options{SentinelAddrs: []string{"127.0.0.1:1"}, MasterName: "m"}, ""},
		{"cluster", Options{ClusterAddrs: []string{"127.0.0.1:1", "127.0.0.1:2"}}, ""},
		{"nothing", Options{}, "exactly one"},
		{"two modes", Options{Addr: "a:1", ClusterAddrs: []string{"b:1"}}, "exactly one"},
		{"sentinel without master", Options{SentinelAddrs: []string{"a:1"}}, "master_name"},
		{"master without sentinel", Options{Addr: "a:1", MasterName: "m"}, "sentinel_addrs"},
		{"cluster with db", Options{ClusterAddrs: []string{"a:1"}, DB: 2}, "db"},
		{"short key", Options{Addr: "a:1", EncryptionKey: []byte("short")}, "32 bytes"},
		{"tls", Options{Addr: "a:1", TLS: true, ServerName: "redis.internal"}, ""},
		{"bad ca", Options{Addr: "a:1", TLS: true, CAPEM: badCA}, "no PEM"},
		{"ca without tls", Options{Addr: "a:1", CAPEM: badCA}, "tls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.o)
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				_ = s.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err %v, want %q", err, tt.err)
			}
		})
	}
}

// A local hit never touches Redis: the hot path costs the same with and without it.
func BenchmarkLocalHit(b *testing.B) {
	rp := testkit.StartRedis(b)
	i := newIDP(b, 3600)
	cc := i.cc("bench")
	for _, withRedis := range []bool{false, true} {
		b.Run(map[bool]string{false: "no-redis", true: "redis"}[withRedis], func(b *testing.B) {
			clk := newClock()
			var c *upstream.Cache
			var r *replica
			if withRedis {
				r = newReplica(b, rp.Addr(), clk, nil)
				c = r.cache
			} else {
				c = upstream.NewCache(upstream.Options{Now: clk.Now, Metrics: metrics.New()}) // same metrics cost as a replica
				defer c.Close()
			}
			src, err := upstream.NewFetchSource(c, "partner", cc)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := src.Token(bg, upstream.Caller{}); err != nil {
				b.Fatal(err)
			}
			var before float64
			if r != nil {
				before = testkit.CounterValue(b, r.m, "tokengate_redis_operations_total", nil)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := src.Token(context.Background(), upstream.Caller{}); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.StopTimer()
			if r != nil {
				if after := testkit.CounterValue(b, r.m, "tokengate_redis_operations_total", nil); after != before {
					b.Fatalf("the hot path touched Redis: %v operations", after-before)
				}
			}
		})
	}
}
