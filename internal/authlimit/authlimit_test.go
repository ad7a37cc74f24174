package authlimit

import (
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testkit"
)

var (
	ipA = netip.MustParseAddr("192.0.2.1")
	ipB = netip.MustParseAddr("192.0.2.2")
)

// TestLimiter drives the failure limiter rules (docs/issuer.md#failure-limiter) with a test clock: the thresholds per
// (client id, IP) and per IP, the 5-minute window, the 60 s penalty after the last failure that
// also refuses correct secrets, and that other keys are never affected.
func TestLimiter(t *testing.T) {
	type step struct {
		op       string // fail, allow, advance
		id       string
		ip       netip.Addr
		n        int           // fail: how many times; advance: ignored
		d        time.Duration // advance: by how much; allow: the wanted retryAfter
		wantDeny bool          // allow
	}
	fail := func(id string, ip netip.Addr, n int) step { return step{op: "fail", id: id, ip: ip, n: n} }
	allowed := func(id string, ip netip.Addr) step { return step{op: "allow", id: id, ip: ip} }
	denied := func(id string, ip netip.Addr, wait time.Duration) step {
		return step{op: "allow", id: id, ip: ip, d: wait, wantDeny: true}
	}
	advance := func(d time.Duration) step { return step{op: "advance", d: d} }
	cases := []struct {
		name  string
		steps []step
	}{
		{"four failures are not enough", []step{fail("x", ipA, 4), allowed("x", ipA)}},
		{"five failures limit the pair for 60 s", []step{
			fail("x", ipA, 5), denied("x", ipA, time.Minute),
			advance(59 * time.Second), denied("x", ipA, time.Second),
			advance(time.Second), allowed("x", ipA),
		}},
		{"the owner from another address is never refused", []step{
			fail("x", ipA, 5), denied("x", ipA, time.Minute), allowed("x", ipB),
		}},
		{"another client from the failing address is not refused below the IP threshold", []step{
			fail("x", ipA, 5), allowed("y", ipA),
		}},
		{"the penalty runs from the last failure", []step{
			fail("x", ipA, 4), advance(30 * time.Second), fail("x", ipA, 1),
			advance(50 * time.Second), denied("x", ipA, 10*time.Second),
		}},
		{"after the penalty one more failure limits again", []step{
			fail("x", ipA, 5), advance(time.Minute), allowed("x", ipA),
			fail("x", ipA, 1), denied("x", ipA, time.Minute),
		}},
		{"failures older than the window are forgotten", []step{
			fail("x", ipA, 4), advance(5 * time.Minute), fail("x", ipA, 1), allowed("x", ipA),
			fail("x", ipA, 3), allowed("x", ipA), fail("x", ipA, 1), denied("x", ipA, time.Minute),
		}},
		{"spread over the window still counts", []step{
			fail("x", ipA, 1), advance(70 * time.Second), fail("x", ipA, 1), advance(70 * time.Second),
			fail("x", ipA, 1), advance(70 * time.Second), fail("x", ipA, 1), advance(70 * time.Second),
			fail("x", ipA, 1), denied("x", ipA, time.Minute),
		}},
		{"fifty failures over many client ids limit the address", []step{
			fail("a", ipA, 4), fail("b", ipA, 4), fail("c", ipA, 4), fail("d", ipA, 4), fail("e", ipA, 4),
			fail("f", ipA, 4), fail("g", ipA, 4), fail("h", ipA, 4), fail("i", ipA, 4), fail("j", ipA, 4),
			fail("k", ipA, 4), fail("l", ipA, 4), allowed("never-failed", ipA), fail("m", ipA, 1),
			allowed("never-failed", ipA), fail("m", ipA, 1), denied("never-failed", ipA, time.Minute),
			allowed("never-failed", ipB), allowed("a", ipB),
		}},
		{"IPv4-mapped IPv6 is the same caller", []step{
			fail("x", netip.MustParseAddr("::ffff:192.0.2.1"), 5), denied("x", ipA, time.Minute),
		}},
		{"a zone is no part of the key", []step{
			fail("x", netip.MustParseAddr("fe80::1%eth0"), 5), denied("x", netip.MustParseAddr("fe80::1%other"), time.Minute),
		}},
		{"unparsable peers share one key", []step{
			fail("x", netip.Addr{}, 5), denied("x", netip.Addr{}, time.Minute), allowed("x", ipA),
		}},
		{"client ids differing only in length are distinct", []step{
			fail("xx", ipA, 5), allowed("x", ipA), allowed("xxx", ipA),
		}},
		{"a clock going backwards never stretches the penalty", []step{
			fail("x", ipA, 5), advance(-time.Hour), denied("x", ipA, time.Minute),
		}},
		// An IPv6 caller holds at least a /64 (RFC 6177 §2, RFC 7421 §1): one key per /64.
		{"fifty failures from fifty addresses of one IPv6 /64 limit the /64", append(fromEach(50, func(n int) step {
			return fail("id"+strconv.Itoa(n), inNet64(1, n), 1)
		}), denied("never-failed", inNet64(1, 1000), time.Minute), allowed("never-failed", inNet64(2, 1000)))},
		{"five failures of a client from five addresses of one /64 limit the pair in that /64", append(fromEach(5, func(n int) step {
			return fail("x", inNet64(1, n), 1)
		}), denied("x", inNet64(1, 99), time.Minute), allowed("x", inNet64(2, 99)), allowed("y", inNet64(1, 99)))},
		{"IPv4 addresses of one /24 stay distinct callers", []step{
			fail("x", ipA, 5), denied("x", ipA, time.Minute), allowed("x", ipB),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := testkit.NewClock(time.Unix(1_700_000_000, 0))
			l := New(Options{Now: clock.Now})
			for n, s := range tc.steps {
				switch s.op {
				case "fail":
					for range s.n {
						l.Fail(s.id, s.ip)
					}
				case "advance":
					clock.Advance(s.d)
				case "allow":
					wait, ok := l.Allow(s.id, s.ip)
					if ok == s.wantDeny || wait != s.d {
						t.Fatalf("step %d: Allow(%q, %s) = %v, %v; want ok=%v retryAfter=%v", n, s.id, s.ip, wait, ok, !s.wantDeny, s.d)
					}
				}
			}
		})
	}
}

// fromEach is n steps, the n-th made by f(n).
func fromEach[S any](n int, f func(int) S) []S {
	out := make([]S, n)
	for k := range out {
		out[k] = f(k)
	}
	return out
}

// inNet64 is an address of the IPv6 /64 2001:db8:0:net::/64 whose interface identifier is n.
func inNet64(net, n int) netip.Addr {
	var b [16]byte
	copy(b[:], []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, byte(net >> 8), byte(net)})
	b[8], b[13], b[14], b[15] = 0x42, byte(n>>16), byte(n>>8), byte(n)
	return netip.AddrFrom16(b)
}

// TestLimiterOptions: configured thresholds and durations replace the defaults.
func TestLimiterOptions(t *testing.T) {
	clock := testkit.NewClock(time.Unix(1_700_000_000, 0))
	l := New(Options{ClientFailures: 2, IPFailures: 3, Window: time.Minute, Penalty: 10 * time.Second, Now: clock.Now})
	l.Fail("x", ipA)
	if _, ok := l.Allow("x", ipA); !ok {
		t.Fatal("one failure of two limited")
	}
	l.Fail("x", ipA)
	if wait, ok := l.Allow("x", ipA); ok || wait != 10*time.Second {
		t.Fatalf("Allow = %v, %v; want the 10 s penalty", wait, ok)
	}
	l.Fail("y", ipA)
	if wait, ok := l.Allow("z", ipA); ok || wait != 10*time.Second {
		t.Fatalf("third failure from the address: Allow = %v, %v", wait, ok)
	}
	clock.Advance(10 * time.Second)
	if _, ok := l.Allow("z", ipA); !ok {
		t.Fatal("still limited after the penalty")
	}
}

// TestLimiterBoundedMemory: whatever keys arrive, each table holds at most Size entries, and a
// 60 KiB client id is held as a 32-byte digest (the key type is [32]byte, so this counts
// entries; the digest is the whole key).
func TestLimiterBoundedMemory(t *testing.T) {
	l := New(Options{Size: 100})
	huge := strings.Repeat("A", 60<<10)
	for n := range 10_000 {
		ip := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
		l.Fail(huge+strconv.Itoa(n), ip)
	}
	if l.pairs.Len() != 100 || l.ips.Len() != 100 {
		t.Fatalf("%d pair and %d IP entries, want the cap of 100 each", l.pairs.Len(), l.ips.Len())
	}
	// Allow never creates entries.
	l2 := New(Options{Size: 100})
	for n := range 1000 {
		l2.Allow(strconv.Itoa(n), ipA)
	}
	if l2.pairs.Len() != 0 || l2.ips.Len() != 0 {
		t.Fatalf("Allow created entries: %d, %d", l2.pairs.Len(), l2.ips.Len())
	}
}

// TestNilLimiter: a nil *Limiter allows everything and Fail does nothing.
func TestNilLimiter(t *testing.T) {
	var l *Limiter
	for range 100 {
		l.Fail("x", ipA)
	}
	if wait, ok := l.Allow("x", ipA); !ok || wait != 0 {
		t.Fatalf("nil Allow = %v, %v", wait, ok)
	}
}

// TestLimiterConcurrent: concurrent failures are all counted (run with -race); the count is
// exact because every Fail holds the lock.
func TestLimiterConcurrent(t *testing.T) {
	clock := testkit.NewClock(time.Unix(1_700_000_000, 0))
	l := New(Options{ClientFailures: 40, IPFailures: 1000, Now: clock.Now})
	var wg sync.WaitGroup
	for range 39 {
		wg.Go(func() {
			l.Allow("x", ipA)
			l.Fail("x", ipA)
		})
	}
	wg.Wait()
	if _, ok := l.Allow("x", ipA); !ok {
		t.Fatal("39 failures of 40 limited")
	}
	l.Fail("x", ipA)
	if _, ok := l.Allow("x", ipA); ok {
		t.Fatal("40 concurrent failures not all counted")
	}
}
