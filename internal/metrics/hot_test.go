package metrics_test

import (
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/testkit"
)

// TestPreResolvedSeries: RouteChecks and the known caches' CacheHit/CacheMiss count in the same
// series as the label lookups they replace, create a series only when first counted (so the
// exposition is unchanged), and allocate nothing per count once it exists.
func TestPreResolvedSeries(t *testing.T) {
	m := metrics.New()
	rc := m.RouteChecks("mint")
	count := func(name string, labels map[string]string) float64 {
		return testkit.CounterValue(t, m, name, labels)
	}
	if n := count("tokengate_check_total", nil); n != 0 {
		t.Fatalf("a series before any Check: %v", n)
	}
	rc.Check(metrics.ResultAllowed, time.Millisecond)
	rc.Check(metrics.ResultAllowed, time.Millisecond)
	m.Check("mint", metrics.ResultAllowed, time.Millisecond)
	rc.Check(metrics.ResultUnavailable, time.Millisecond)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"tokengate_check_total", map[string]string{"route": "mint", "result": "allowed"}, 3},
		{"tokengate_check_total", map[string]string{"route": "mint", "result": "unavailable"}, 1},
		{"tokengate_check_total", map[string]string{"route": "mint", "result": "denied"}, 0},
	} {
		if got := count(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, cache := range []string{"verified_tokens", "upstream_tokens", "redis", "other"} {
		m.CacheHit(cache)
		m.CacheHit(cache)
		m.CacheMiss(cache)
		if got := count("tokengate_cache_hits_total", map[string]string{"cache": cache}); got != 2 {
			t.Errorf("hits of %s = %v, want 2", cache, got)
		}
		if got := count("tokengate_cache_misses_total", map[string]string{"cache": cache}); got != 1 {
			t.Errorf("misses of %s = %v, want 1", cache, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		rc.Check(metrics.ResultAllowed, time.Millisecond)
		m.CacheHit("verified_tokens")
		m.CacheMiss("upstream_tokens")
	}); n != 0 {
		t.Errorf("%v allocations per count, want 0", n)
	}
	var nilM *metrics.Metrics
	nilM.RouteChecks("x").Check(metrics.ResultDenied, time.Second) // records nothing, does not panic
}

// BenchmarkCheckMetric: a decision counted through the label lookup and through RouteChecks.
func BenchmarkCheckMetric(b *testing.B) {
	m := metrics.New()
	b.Run("WithLabelValues", func(b *testing.B) {
		for b.Loop() {
			m.Check("mint", metrics.ResultAllowed, time.Millisecond)
		}
	})
	rc := m.RouteChecks("mint")
	b.Run("RouteChecks", func(b *testing.B) {
		for b.Loop() {
			rc.Check(metrics.ResultAllowed, time.Millisecond)
		}
	})
}
