package jwks

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/jwks/jwkstest"
	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/testkit"
)

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

type env struct {
	srv   *jwkstest.Server
	r     *Remote
	clock *testkit.Clock
	m     *metrics.Metrics
	logs  *testkit.LogBuffer
}

// start builds a Remote on srv's JWKS URL with a fake clock; mod adjusts the options.
func start(t *testing.T, srv *jwkstest.Server, mod func(*Options)) *env {
	t.Helper()
	e := &env{srv: srv, clock: testkit.NewClock(time.Unix(1_800_000_000, 0)), m: metrics.New(), logs: &testkit.LogBuffer{}}
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
	return testkit.CounterValue(t, e.m, "tokengate_jwks_refresh_total", map[string]string{"provider": "corp", "result": result})
}
