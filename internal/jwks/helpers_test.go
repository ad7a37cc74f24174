package jwks

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tokengate/tokengate/internal/jwks/jwkstest"
	"github.com/tokengate/tokengate/internal/metrics"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// schedule replaces time.After in the refresh loop: each wait the loop asks for is sent on
// delays, and the loop resumes when the test sends on fire.
type schedule struct {
	delays chan time.Duration
	fire   chan time.Time
}

func newSchedule() *schedule {
	return &schedule{delays: make(chan time.Duration, 100), fire: make(chan time.Time)}
}

func (s *schedule) after(d time.Duration) <-chan time.Time {
	s.delays <- d
	return s.fire
}

// next waits for the loop's next requested delay.
func (s *schedule) next(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-s.delays:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("the refresh loop asked for no delay")
		return 0
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type env struct {
	srv   *jwkstest.Server
	r     *Remote
	clock *fakeClock
	m     *metrics.Metrics
	logs  *syncBuffer
}

// start builds a Remote on srv's JWKS URL with a fake clock; mod adjusts the options.
func start(t *testing.T, srv *jwkstest.Server, mod func(*Options)) *env {
	t.Helper()
	e := &env{srv: srv, clock: newClock(), m: metrics.New(), logs: &syncBuffer{}}
	opts := Options{
		Name:    "corp",
		JWKSURI: srv.JWKSURL(),
		Logger:  slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: e.m,
		Now:     e.clock.Now,
	}
	if mod != nil {
		mod(&opts)
	}
	r, err := NewRemote(context.Background(), opts)
	if err != nil {
		t.Fatalf("NewRemote: %v", err)
	}
	t.Cleanup(r.Close)
	e.r = r
	return e
}

func (e *env) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-e.r.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("keys never loaded")
	}
}

// refreshCount is tokengate_jwks_refresh_total{provider="corp",result}.
func (e *env) refreshCount(t *testing.T, result string) float64 {
	t.Helper()
	return counter(t, e.m, "tokengate_jwks_refresh_total", map[string]string{"provider": "corp", "result": result})
}

func counter(t *testing.T, m *metrics.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			if hasLabels(mt, labels) {
				return mt.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
			n++
		}
	}
	return n == len(want)
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
