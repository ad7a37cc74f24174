package extauthz

import (
	"net/netip"
	"strings"
)

// This file is the one owner of the normal forms routes are matched in
// (docs/decisions.md#path-normal-form, #route-selection): the path of a request and its authority.
// Route selection, the safety check of every request and the route table's own prefixes and
// authorities all go through it, so that what a request is compared as and what a route is compared
// against can never drift apart.

const upperHex = "0123456789ABCDEF"

// normalizePath returns the normal form of a request path (the :path, X-Forwarded-Uri or
// X-Original-URI, with or without a query) and true, or false when no normal form represents
// it safely; such a path fits no route.
//
// The normal form is what an upstream that decodes the path would resolve, in a form in which
// two spellings of one resource are one string:
//   - the query is dropped (RFC 3986 §3.4: it is not part of the path);
//   - percent-encoded unreserved characters (RFC 3986 §2.3: ALPHA / DIGIT / "-" / "." / "_" /
//     "~") are decoded (§6.2.2.2: "/%61dmin" is "/admin"), except "." (below);
//   - every other escape stays encoded, with upper-case hex digits (§6.2.2.1), so "%c3%a9" and
//     "%C3%A9" are one form; printable characters RFC 3986 §3.3 does not allow raw in a path
//     (space, `"`, `<`, `>`, `[`, `]`, `^`, "`", `{`, `|`, `}`) are encoded the same way, as a
//     client library would have sent them;
//   - "" (which Envoy never sends) is "/".
//
// Refused, because an upstream or a framework between it and us could read them as another path
// than the one we matched:
//   - a path not starting with "/" (including the asterisk-form "*" of OPTIONS, RFC 9112 §3.2.4,
//     and a bare query "?x");
//   - an encoded "/", "\" or "." (%2F, %5C, %2E in any case): whether an upstream decodes them
//     before or after splitting segments decides which resource it serves;
//   - the same encoded twice or more ("%252E", "%25252f", "%25%32%45" once its digits are
//     decoded): "%25" stays encoded, so "/public/%252E%252E/admin" would fit a /public/ prefix,
//     and an upstream (or a proxy and then the upstream) that decodes twice reads "/admin";
//   - an escape that decodes to a control character (%00-%1F, %7F) or to ";" (%3B);
//   - a "." or ".." segment (RFC 3986 §5.2.4 removes them) and an empty segment ("//", which
//     some servers merge) other than the final one of a trailing "/";
//   - a ";" anywhere: path parameters (RFC 3986 §3.3), which Tomcat and Spring strip before
//     routing, so "/admin;/x" and "/x/..;/admin/x" reach /admin/x;
//   - a backslash, which some servers treat as "/";
//   - a raw "#": a request-target carries no fragment (RFC 9112 §3.2), and servers disagree on
//     whether it ends the path (Go keeps it in the path and then cleans "/a#/../b" to "/b");
//   - a control character (0x00-0x1F, 0x7F), and any byte >= 0x80: raw non-ASCII is not valid
//     in a URI (RFC 3986 §2), and clients send it percent-encoded;
//   - an invalid percent-encoding ("%", "%4", "%zz"; RFC 3986 §2.1 requires two hex digits).
func normalizePath(raw string) (string, bool) {
	if raw == "" {
		return "/", true
	}
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	if raw == "" || raw[0] != '/' {
		return "", false
	}
	p := raw // a path with nothing to escape or decode is its own normal form: no copy
	for i := 0; i < len(raw); i++ {
		if !plainPathByte(raw[i]) {
			var ok bool
			if p, ok = escapePath(raw); !ok {
				return "", false
			}
			break
		}
	}
	// Escapes never decode to "/" or ".", so the segments of the result are those of raw.
	for rest := p[1:]; ; {
		seg, tail, more := strings.Cut(rest, "/")
		if seg == "." || seg == ".." || (seg == "" && more) {
			return "", false
		}
		if !more {
			return p, true
		}
		rest = tail
	}
}

// plainPathByte reports whether c stands for itself in a normal path: printable ASCII that is
// neither an escape, nor refused, nor escaped by escapePath.
func plainPathByte(c byte) bool {
	switch c {
	case '%', '\\', ';', '#', '"', '<', '>', '[', ']', '^', '`', '{', '|', '}':
		return false
	}
	return c > 0x20 && c < 0x7f
}

// escapePath is normalizePath's character rules for a path that has an escape or a character
// to escape: the path rebuilt, or false when it is refused.
func escapePath(raw string) (string, bool) {
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '%':
			if i+2 >= len(raw) {
				return "", false
			}
			hi, ok1 := unhex(raw[i+1])
			lo, ok2 := unhex(raw[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			i += 2
			v := hi<<4 | lo
			switch {
			case v == '.' || v == '/' || v == '\\' || v == ';' || v < 0x20 || v == 0x7f:
				return "", false
			case isUnreserved(v):
				b.WriteByte(v)
			default:
				b.WriteByte('%')
				b.WriteByte(upperHex[v>>4])
				b.WriteByte(upperHex[v&0xf])
			}
		case c < 0x20 || c >= 0x7f || c == '\\' || c == ';' || c == '#':
			return "", false
		case strings.IndexByte(` "<>[]^`+"`"+`{|}`, c) >= 0:
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	out := b.String()
	if multiEncodedSeparator(out) {
		return "", false
	}
	return out, true
}

// multiEncodedSeparator reports whether a path escapePath rebuilt holds "/", "\" or "."
// encoded more than once: "%25", then any number of "25", then 2E, 2F or 5C in either case.
// It looks at the rebuilt path, not the raw one, so that an escaped hex digit ("%25%32%45",
// normally "%252E") is seen as what the upstream's first decoding makes of it.
func multiEncodedSeparator(p string) bool {
	for {
		i := strings.Index(p, "%25")
		if i < 0 {
			return false
		}
		p = p[i+3:]
		rest := p
		for strings.HasPrefix(rest, "25") {
			rest = rest[2:]
		}
		if len(rest) >= 2 {
			switch lowerASCII(rest[0]) {
			case '2':
				if l := lowerASCII(rest[1]); l == 'e' || l == 'f' {
					return true
				}
			case '5':
				if lowerASCII(rest[1]) == 'c' {
					return true
				}
			}
		}
	}
}

// normalizePrefix puts a configured path_prefix in the form normalizePath gives requests, so
// that "/%7Euser/" matches "/~user/" and, once both are decoded (percentDecode), "/café/" in the
// configuration matches the "/caf%C3%A9/" clients send. Unlike a request path, a prefix may end in the middle of a segment ("/api")
// or of a dot segment, so only the character rules apply. A prefix that cannot be put in normal
// form (an invalid escape, a control character) is kept as it is: the config package refuses
// such prefixes, and kept as-is it matches no normalized path.
func normalizePrefix(prefix string) string {
	var b strings.Builder
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		switch {
		case c == '%':
			if i+2 >= len(prefix) {
				return prefix
			}
			hi, ok1 := unhex(prefix[i+1])
			lo, ok2 := unhex(prefix[i+2])
			if !ok1 || !ok2 {
				return prefix
			}
			i += 2
			if v := hi<<4 | lo; isUnreserved(v) && v != '.' {
				b.WriteByte(v)
			} else {
				b.WriteByte('%')
				b.WriteByte(upperHex[v>>4])
				b.WriteByte(upperHex[v&0xf])
			}
		case c < 0x20 || c == 0x7f:
			return prefix
		case c >= 0x80 || strings.IndexByte(` "<>[]^`+"`"+`{|}`, c) >= 0:
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// percentDecode decodes every escape of a string normalizePath or normalizePrefix returned: the
// bytes an upstream that decodes the path resolves. Route prefixes are compared on it, so that
// "/a%2Bb/" cannot dodge a prefix "/a+b/" (RFC 3986 leaves sub-delims and their escapes
// distinct, but upstreams decode both to one path). It is safe because a normal form holds no
// escape of "/", "\", ".", ";" or a control character: decoding changes no segment. An
// invalid escape (only in a prefix the config package refuses) is kept as it is.
func percentDecode(s string) string {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				b = append(b, hi<<4|lo)
				i += 2
				continue
			}
		}
		b = append(b, c)
	}
	return string(b)
}

// hasPathPrefix compares a decoded normalized path with a decoded normalized prefix; with ignoreCase, ASCII
// letters compare in any case. Only ASCII folds: Unicode folding would let "K" (U+212A KELVIN
// SIGN, %E2%84%AA) stand for "k", which a case-insensitive upstream need not do.
func hasPathPrefix(path, prefix string, ignoreCase bool) bool {
	if len(path) < len(prefix) {
		return false
	}
	if !ignoreCase {
		return path[:len(prefix)] == prefix
	}
	for i := 0; i < len(prefix); i++ {
		if lowerASCII(path[i]) != lowerASCII(prefix[i]) {
			return false
		}
	}
	return true
}

// normalizeAuthority returns the host of an :authority (or Host, or X-Forwarded-Host) as routes
// compare it (docs/decisions.md#route-selection): without its port, in lower case (RFC 3986 §3.2.2:
// hosts are case-insensitive) and without one trailing dot (the absolute form of a DNS name,
// RFC 1034 §3.1, names the same host): "Secure.Example.COM.:443" is "secure.example.com",
// "[::1]:80" is "::1". "" stays "" (no authority). It reports false for an authority that is not a
// host and an optional decimal port: userinfo ("a@b"), an empty label ("a..", ".a"; only ONE
// trailing dot is removed, as nginx does, so "a.." is not made valid), a character outside letters,
// digits, "-", "_" and ".", or an IP literal that does not parse. Such a request fits no route: a
// gateway would not have routed it to the virtual host it resembles.
func normalizeAuthority(authority string) (string, bool) {
	if authority == "" {
		return "", true
	}
	host, port := authority, ""
	if authority[0] == '[' {
		end := strings.IndexByte(authority, ']')
		if end < 0 {
			return "", false
		}
		host, port = authority[1:end], authority[end+1:]
		if port != "" && port[0] != ':' {
			return "", false
		}
		addr, err := netip.ParseAddr(host)
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return "", false
		}
		host = addr.String() // one spelling of each address: "::1" for "0:0::1"
	} else if i := strings.LastIndexByte(authority, ':'); i >= 0 {
		host, port = authority[:i], authority[i:]
	}
	if port != "" {
		for _, c := range []byte(port[1:]) {
			if c < '0' || c > '9' {
				return "", false
			}
		}
	}
	if authority[0] == '[' {
		return host, true
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return "", false
	}
	prevDot := true // a leading dot is an empty label
	upper := false
	for i := 0; i < len(host); i++ {
		c := lowerASCII(host[i])
		upper = upper || c != host[i]
		switch {
		case c == '.':
			if prevDot {
				return "", false
			}
			prevDot = true
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			prevDot = false
		default:
			return "", false
		}
	}
	if prevDot { // "a.." after the one trailing dot was removed
		return "", false
	}
	if !upper { // already in lower case: no copy
		return host, true
	}
	b := make([]byte, len(host))
	for i := 0; i < len(host); i++ {
		b[i] = lowerASCII(host[i])
	}
	return string(b), true
}

// normalizeAuthorityPattern puts a route's configured authority in the form normalizeAuthority
// gives requests; a "*." wildcard keeps its star. A pattern that does not normalize is kept in
// lower case (the config package refuses it; kept, it matches nothing a request normalizes to).
func normalizeAuthorityPattern(pattern string) string {
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		if h, ok := normalizeAuthority(rest); ok && h != "" {
			return "*." + h
		}
		return strings.ToLower(pattern)
	}
	if h, ok := normalizeAuthority(pattern); ok {
		return h
	}
	if addr, err := netip.ParseAddr(pattern); err == nil && addr.Is6() { // "::1" without brackets
		return addr.String()
	}
	return strings.ToLower(pattern)
}

// authorityMatches compares a normalized host with a normalized pattern: "*.example.com"
// matches any name ending in ".example.com" but not "example.com" itself.
func authorityMatches(pattern, host string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return len(host) > len(suffix) && strings.HasSuffix(host, suffix)
	}
	return pattern == host
}

func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func lowerASCII(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
