package authlimit

import (
	"net"
	"net/netip"
	"strings"
)

// ClientIP is the caller's address for the failure limiter (docs/issuer.md#failure-limiter): the
// socket peer (remoteAddr, "host:port" as net/http gives it), unless the peer is one of trusted, in
// which case the right-most address of X-Forwarded-For (every header value, in order) that is not
// itself trusted. A malformed X-Forwarded-For entry stops the walk at the last address known good:
// a proxy we trust appends well-formed entries, so anything else came from further out. The zero
// Addr means the peer could not be parsed. Addresses come back unmapped (an IPv4-mapped IPv6
// address is its IPv4 address) and without a zone, so one caller is one key however it is written.
func ClientIP(remoteAddr string, xff []string, trusted []netip.Prefix) netip.Addr {
	host := remoteAddr
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		host = h
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	peer = peer.Unmap().WithZone("")
	if !isTrusted(peer, trusted) {
		return peer
	}
	var hops []string
	for _, v := range xff {
		for _, h := range strings.Split(v, ",") {
			hops = append(hops, strings.TrimSpace(h))
		}
	}
	ip := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(hops[i])
		if err != nil {
			return ip
		}
		ip = a.Unmap().WithZone("")
		if !isTrusted(ip, trusted) {
			return ip
		}
	}
	return ip
}

func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
