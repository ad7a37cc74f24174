package issuer

import (
	"strings"
	"testing"
	"time"
)

// TestLimiter exercises the token bucket directly: burst, refill, refund, a clock going
// backwards, the non-reserving allow/fail pair, and the LRU bound on memory.
func TestLimiter(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	k := limiterKey('c', "svc")
	type step struct {
		op   string // take, refund, allow, fail
		at   time.Duration
		ok   bool
		wait time.Duration
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"burst then refused", []step{
			{"take", 0, true, 0}, {"take", 0, true, 0}, {"take", 0, true, 0}, {"take", 0, false, time.Second},
		}},
		{"partial refill shortens the wait", []step{
			{"take", 0, true, 0}, {"take", 0, true, 0}, {"take", 0, true, 0}, {"take", 250 * time.Millisecond, false, 750 * time.Millisecond},
			{"take", time.Second, true, 0}, {"take", time.Second, false, time.Second},
		}},
		{"refund restores", []step{
			{"take", 0, true, 0}, {"refund", 0, true, 0}, {"take", 0, true, 0}, {"take", 0, true, 0}, {"take", 0, true, 0}, {"take", 0, false, time.Second},
		}},
		{"refill never exceeds the burst", []step{
			{"take", time.Hour, true, 0}, {"take", time.Hour, true, 0}, {"take", time.Hour, true, 0}, {"take", time.Hour, false, time.Second},
		}},
		{"clock backwards adds nothing", []step{
			{"take", time.Minute, true, 0}, {"take", time.Minute, true, 0}, {"take", time.Minute, true, 0}, {"take", 0, false, time.Second},
		}},
		{"allow does not consume, fail does", []step{
			{"allow", 0, true, 0}, {"allow", 0, true, 0}, {"fail", 0, true, 0}, {"fail", 0, true, 0}, {"fail", 0, true, 0}, {"fail", 0, true, 0},
			{"allow", 0, false, time.Second}, {"allow", time.Second, true, 0},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimiter(3, time.Second, 10)
			for n, s := range tc.steps {
				now := t0.Add(s.at)
				var ok = true
				var wait time.Duration
				switch s.op {
				case "take":
					ok, wait = l.take(k, now)
				case "allow":
					ok, wait = l.allow(k, now)
				case "refund":
					l.refund(k, now)
				case "fail":
					l.fail(k, now)
				}
				if ok != s.ok || wait != s.wait {
					t.Fatalf("step %d %s: ok=%v wait=%v, want %v %v", n, s.op, ok, wait, s.ok, s.wait)
				}
			}
		})
	}
	t.Run("bounded memory", func(t *testing.T) {
		l := newLimiter(3, time.Second, 100)
		for n := range 10000 {
			l.take(limiterKey('c', strings.Repeat("x", n%50)+string(rune(n))), t0)
		}
		if got := l.buckets.Len(); got != 100 {
			t.Errorf("%d buckets, want the cap 100", got)
		}
	})
	t.Run("nil limiter allows", func(t *testing.T) {
		var l *limiter
		if ok, _ := l.take(k, t0); !ok {
			t.Error("nil take refused")
		}
		if ok, _ := l.allow(k, t0); !ok {
			t.Error("nil allow refused")
		}
		l.fail(k, t0)
		l.refund(k, t0)
	})
}

// TestPerIPLimiterDisabled: a negative IPFailureBurst turns the per-IP bucket off.
func TestPerIPLimiterDisabled(t *testing.T) {
	e := newEnv(t, func(_ *Config, o *Options) { o.IPFailureBurst = -1; o.FailureBurst = 1 })
	if e.iss.limitIP != nil {
		t.Fatal("per-IP limiter present")
	}
	for k := range 30 {
		checkOAuthError(t, e.do(t, req{contentType: formCT, basic: basicAuth("id"+string(rune('A'+k)), "x"),
			body: form("grant_type", "client_credentials")}), 401, ErrInvalidClient)
	}
}
