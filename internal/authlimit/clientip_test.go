package authlimit

import (
	"net/netip"
	"testing"
)

// TestClientIP: who the caller is (docs/issuer.md#failure-limiter). X-Forwarded-For counts only when the socket
// peer is a trusted proxy, and then only up to the right-most address that is not trusted:
// anything further left was written by the client and could say anything.
func TestClientIP(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	cases := []struct {
		name    string
		remote  string
		xff     []string
		trusted []netip.Prefix
		want    string // "" is the zero Addr
	}{
		{"no trusted proxies: the peer, X-Forwarded-For ignored", "192.0.2.7:5555", []string{"203.0.113.9"}, nil, "192.0.2.7"},
		{"untrusted peer: a spoofed X-Forwarded-For ignored", "192.0.2.7:5555", []string{"203.0.113.9"}, proxies, "192.0.2.7"},
		{"trusted peer: the right-most hop", "10.1.1.1:443", []string{"203.0.113.9"}, proxies, "203.0.113.9"},
		{"trusted peer: the right-most untrusted hop, client-written hops left of it ignored", "10.1.1.1:443",
			[]string{"198.51.100.1, 203.0.113.9, 10.2.2.2"}, proxies, "203.0.113.9"},
		{"several header values are one list, in order", "10.1.1.1:443",
			[]string{"198.51.100.1", "203.0.113.9", "10.2.2.2"}, proxies, "203.0.113.9"},
		{"all hops trusted: the left-most", "10.1.1.1:443", []string{"10.3.3.3, 10.2.2.2"}, proxies, "10.3.3.3"},
		{"trusted peer, no header: the peer", "10.1.1.1:443", nil, proxies, "10.1.1.1"},
		{"malformed hop stops the walk at the last good address", "10.1.1.1:443",
			[]string{"203.0.113.9, garbage, 10.2.2.2"}, proxies, "10.2.2.2"},
		{"malformed right-most hop: the peer", "10.1.1.1:443", []string{"203.0.113.9, not-an-ip"}, proxies, "10.1.1.1"},
		{"hop with a port is malformed", "10.1.1.1:443", []string{"203.0.113.9:80"}, proxies, "10.1.1.1"},
		{"IPv4-mapped IPv6 peer is its IPv4 address", "[::ffff:192.0.2.7]:5555", nil, nil, "192.0.2.7"},
		{"IPv4-mapped IPv6 peer is trusted by an IPv4 prefix", "[::ffff:10.1.1.1]:443", []string{"203.0.113.9"}, proxies, "203.0.113.9"},
		{"IPv4-mapped IPv6 hop", "10.1.1.1:443", []string{"::ffff:203.0.113.9"}, proxies, "203.0.113.9"},
		{"IPv6 peer and hop", "[fd00::1]:443", []string{"2001:db8::5"}, proxies, "2001:db8::5"},
		{"zone dropped", "[fe80::1%eth0]:443", nil, nil, "fe80::1"},
		{"zone of a hop dropped", "10.1.1.1:443", []string{"2001:db8::5%evil-long-zone"}, proxies, "2001:db8::5"},
		{"peer without port", "192.0.2.7", nil, nil, "192.0.2.7"},
		{"unparsable peer", "not-an-address:1", nil, proxies, ""},
		{"empty peer", "", nil, proxies, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ClientIP(tc.remote, tc.xff, tc.trusted)
			want := netip.Addr{}
			if tc.want != "" {
				want = netip.MustParseAddr(tc.want)
			}
			if got != want {
				t.Errorf("ClientIP(%q, %q) = %v, want %v", tc.remote, tc.xff, got, want)
			}
		})
	}
}
