// Package testkit holds the small test-support helpers that several packages' tests need: a log
// sink safe for concurrent writes, a clock moved by hand, a poll-until helper, a reader of
// Prometheus counters, a throwaway signing key on disk and throwaway X.509 certificates (a CA
// and its leaves, or self-signed ones). They used to be copied into each package's tests; one
// copy here keeps them from drifting apart.
//
// It is an ordinary package (not a _test.go file) so that the tests of any package can import
// it, but it is for tests only: nothing outside _test.go files should use it. To stay free of
// import cycles it imports no tokengate package but internal/metrics, which imports none; so
// the internal tests of internal/metrics itself cannot use it.
package testkit

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/metrics"
)

// LogBuffer is an io.Writer safe for concurrent writes, such as the goroutines of a running
// server logging through one slog handler; String reads everything written so far. The zero
// value is ready to use.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Clock is a clock tests move by hand, so that reaching a refresh point or an expiry needs no
// sleeping. Pass its Now method where code takes a func() time.Time. It only tells the time: it
// fires no timers. It is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock that reads start until it is moved.
func NewClock(start time.Time) *Clock { return &Clock{t: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// WaitFor calls cond every poll until it returns true, and fails the test with "timed out
// waiting for <what>" when it has not after timeout.
func WaitFor(t testing.TB, what string, timeout, poll time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(poll)
	}
}

// CounterValue reads the counter name from m's registry: the sum of its samples whose labels
// include every name and value of labels. With the full label set of a counter vector that is
// the one sample (0 while it has not been counted); with nil labels it is the whole family.
func CounterValue(t testing.TB, m *metrics.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			n := 0
			for _, l := range mt.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
					n++
				}
			}
			if n == len(labels) {
				sum += mt.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// WriteP256Key writes a freshly generated P-256 private key to path as a PKCS#8 PEM block (what
// `tokengate keygen` writes), with mode 0600, creating path's directory (0700) when needed.
func WriteP256Key(t testing.TB, path string) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
