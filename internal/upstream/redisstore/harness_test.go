package redisstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/internal/upstream"
)

// redisProc is a real redis-server started by the test on a free loopback port.
type redisProc struct {
	t    testing.TB
	bin  string
	port int
	dir  string
	args func(port int) []string // nil: plain TCP on port
	tls  *tls.Config             // how to reach it for the readiness check; nil: plain TCP
	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *bytes.Buffer
}

// startRedis starts redis-server, or skips when it is not installed — except under CI, where a
// missing redis-server fails the test.
func startRedis(t testing.TB, args ...string) *redisProc {
	t.Helper()
	return startRedisWith(t, nil, func(port int) []string {
		return append([]string{"--port", strconv.Itoa(port)}, args...)
	})
}

// startRedisWith starts redis-server with the arguments args(port) (plus storage-less defaults);
// tc, when set, is used to check it answers over TLS.
func startRedisWith(t testing.TB, tc *tls.Config, args func(port int) []string) *redisProc {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not installed (CI=true): apt-get install -y redis-server")
		}
		t.Skip("redis-server not installed")
	}
	p := &redisProc{t: t, bin: bin, dir: t.TempDir(), args: args, tls: tc}
	var lastErr error
	for range 5 {
		p.port = freePort(t)
		if lastErr = p.start(); lastErr == nil {
			t.Cleanup(p.stop)
			return p
		}
	}
	t.Fatalf("cannot start redis-server: %v", lastErr)
	return nil
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (p *redisProc) addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// start runs redis-server on p.port and waits until it answers PING.
func (p *redisProc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := &bytes.Buffer{}
	args := append(p.args(p.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", p.dir, "--protected-mode", "no", "--loglevel", "warning")
	cmd := exec.Command(p.bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited: %s", out.String())
		default:
		}
		if ping(p.addr(), p.tls) {
			p.cmd, p.out = cmd, out
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-exited
	return fmt.Errorf("redis-server did not answer: %s", out.String())
}

// stop kills the server (SIGKILL: an outage, not a shutdown).
func (p *redisProc) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for ping(p.addr(), p.tls) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	p.cmd = nil
}

func ping(addr string, tc *tls.Config) bool {
	var c net.Conn
	var err error
	d := &net.Dialer{Timeout: 200 * time.Millisecond}
	if tc != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, tc)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	// -NOAUTH: a server with requirepass is up too.
	return err == nil && (line == "+PONG\r\n" || strings.HasPrefix(line, "-NOAUTH"))
}

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
