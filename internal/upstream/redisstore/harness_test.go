package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/internal/upstream"
)

// newClock is the token clock shared by the replicas of a test fleet, moved by hand.
func newClock() *testkit.Clock { return testkit.NewClock(time.Now().Truncate(time.Second)) }

// idp is a counting token endpoint; hold makes answers wait until released.
type idp struct {
	srv   *httptest.Server
	calls atomic.Int64
	h     atomic.Pointer[func(w http.ResponseWriter, r *http.Request, n int64)]
	stop  chan struct{}
}

func newIDP(t testing.TB, life int) *idp {
	i := &idp{stop: make(chan struct{})}
	i.set(i.ok(life))
	i.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := i.calls.Add(1)
		(*i.h.Load())(w, r, n)
	}))
	t.Cleanup(func() {
		close(i.stop)
		i.srv.CloseClientConnections()
		i.srv.Close()
	})
	return i
}

func (i *idp) set(h func(w http.ResponseWriter, r *http.Request, n int64)) { i.h.Store(&h) }

func (i *idp) n() int64 { return i.calls.Load() }

func (i *idp) ok(life int) func(w http.ResponseWriter, r *http.Request, n int64) {
	return func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": fmt.Sprintf("upstream-token-%d", n), "token_type": "Bearer", "expires_in": life})
	}
}

func (i *idp) cc(clientID string) upstream.ClientCredentials {
	return upstream.ClientCredentials{TokenURL: i.srv.URL + "/token", ClientID: clientID, ClientSecret: "s3cret-" + clientID, Scopes: []string{"orders.read"}, Timeout: 3 * time.Second}
}

// replica is one tokengate process of a fleet: its own local cache, Redis connections, metrics.
type replica struct {
	cache *upstream.Cache
	store *Store
	m     *metrics.Metrics
	log   *testkit.LogBuffer
}

func newReplica(t testing.TB, addr string, clk *testkit.Clock, mod func(*Options)) *replica {
	t.Helper()
	r := &replica{m: metrics.New(), log: &testkit.LogBuffer{}}
	logger := slog.New(slog.NewJSONHandler(r.log, nil))
	o := Options{Addr: addr, KeyPrefix: "tg-test:", Timeout: 200 * time.Millisecond, LockTTL: 300 * time.Millisecond,
		RetryInterval: 100 * time.Millisecond, Logger: logger, Metrics: r.m, Now: clk.Now}
	if mod != nil {
		mod(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	r.store = s
	r.cache = upstream.NewCache(upstream.Options{Store: s, Now: clk.Now, Logger: logger, Metrics: r.m, StorePollInterval: 10 * time.Millisecond})
	t.Cleanup(func() {
		r.cache.Close()
		_ = s.Close()
	})
	return r
}

func newFleet(t testing.TB, n int, addr string, clk *testkit.Clock, mod func(*Options)) []*replica {
	fleet := make([]*replica, n)
	for k := range fleet {
		fleet[k] = newReplica(t, addr, clk, mod)
	}
	return fleet
}

var bg = context.Background()
