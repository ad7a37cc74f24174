package extauthz

import "testing"

// TestNormalizePath: the path normal form (docs/decisions.md#path-normal-form; RFC 3986 §6.2.2), byte by byte (issue 9 finding 3).
func TestNormalizePath(t *testing.T) {
	const refused = "\x00refused"
	for _, tc := range []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"/admin/x", "/admin/x"},
		{"/admin/", "/admin/"},
		{"/admin/x?q=1", "/admin/x"},
		{"/admin/x?q=/../%zz;\\", "/admin/x"}, // the query is not the path
		{"/?", "/"},
		// RFC 3986 §6.2.2.2: unreserved escapes decoded, in either hex case.
		{"/%61dmin/x", "/admin/x"},
		{"/admi%6E/x", "/admin/x"},
		{"/admi%6e/x", "/admin/x"},
		{"/%41%5a%30%39%2D%5F%7E", "/AZ09-_~"},
		// Other escapes stay, with upper-case hex (§6.2.2.1).
		{"/a%20b", "/a%20b"},
		{"/caf%c3%a9", "/caf%C3%A9"},
		{"/%2561dmin", "/%2561dmin"}, // %25 is "%": decoded once, it would be "%61dmin" again
		{"/a%3fb", "/a%3Fb"},
		{"/a%23b", "/a%23b"},
		{"/a%40b%3A", "/a%40b%3A"},
		{"/a%ffb", "/a%FFb"},
		// Raw characters RFC 3986 does not allow in a path are encoded as a client would.
		{"/a b", "/a%20b"},
		{"/a|b{c}", "/a%7Cb%7Bc%7D"},
		{"/a\"<>^`[]", "/a%22%3C%3E%5E%60%5B%5D"},
		// Allowed as they are: sub-delims, ":" and "@" (RFC 3986 §3.3), "..." is not a dot segment.
		{"/a!$&'()*+,=:@b", "/a!$&'()*+,=:@b"},
		{"/.../x", "/.../x"},
		{"/.a/..b/x.", "/.a/..b/x."},
		// Refused.
		{"*", refused},
		{"admin", refused},
		{"?x", refused},
		{"%2Fadmin", refused},
		{"//", refused},
		{"//admin", refused},
		{"/admin//x", refused},
		{"/.", refused},
		{"/..", refused},
		{"/./x", refused},
		{"/x/../admin", refused},
		{"/x/..", refused},
		{"/x/.", refused},
		{"/%2e%2e/admin", refused},
		{"/%2E/admin", refused},
		{"/.%2e/admin", refused},
		{"/admin%2Fx", refused},
		{"/admin%2fx", refused},
		{"/admin%5Cx", refused},
		{"/admin%5cx", refused},
		{"/admin\\x", refused},
		{"/admin;/x", refused},
		{"/admin;", refused},
		{"/x/..;/admin/x", refused},
		{"/admin%3B/x", refused},
		{"/admin%3b/x", refused},
		{"/a#/../admin", refused},
		{"/a\x00", refused},
		{"/a\x1f", refused},
		{"/a\x7f", refused},
		{"/a\t", refused},
		{"/a\r\nX: y", refused},
		{"/a%00", refused},
		{"/a%0a", refused},
		{"/a%7F", refused},
		{"/caf\xc3\xa9", refused},
		{"/\xff", refused},
		{"/%", refused},
		{"/%4", refused},
		{"/%zz", refused},
		{"/%4g", refused},
		{"/%g4", refused},
		{"/a%", refused},
		// Double-encoded "/", "\" and "." (and deeper): refused like the single-encoded ones, for
		// an upstream that decodes twice.
		{"/public/%252E%252E/admin", refused},
		{"/public/%252e%252e/admin", refused},
		{"/a%252Fb", refused},
		{"/a%252fb", refused},
		{"/a%255Cb", refused},
		{"/a%255cb", refused},
		{"/a%25%32%45b", refused}, // "%" then an escaped "2E": one decode makes it "%2E"
		{"/a%25252Eb", refused},
		{"/a%2525252fb", refused},
		{"/a%25", "/a%25"},
		{"/a%2525", "/a%2525"},
		{"/a%252", "/a%252"},
		{"/a%2541", "/a%2541"},
		{"/a%252Gb", "/a%252Gb"},
		{"/a%253Ab", "/a%253Ab"},
	} {
		got, ok := normalizePath(tc.in)
		if !ok {
			got = refused
		}
		if got != tc.want {
			t.Errorf("normalizePath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNormalizeAuthority(t *testing.T) {
	const refused = "\x00refused"
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"x", "x"},
		{"secure.example.com", "secure.example.com"},
		{"secure.example.com.", "secure.example.com"},
		{"Secure.Example.COM.:443", "secure.example.com"},
		{"secure.example.com:8443", "secure.example.com"},
		{"secure.example.com:", "secure.example.com"},
		{"127.0.0.1:8080", "127.0.0.1"},
		{"my_host-1", "my_host-1"},
		{"[::1]:80", "::1"},
		{"[::1]", "::1"},
		{"[0:0::1]", "::1"},
		{"[2001:DB8::1]:443", "2001:db8::1"},
		{"secure.example.com..", refused},
		{".secure.example.com", refused},
		{"a..b", refused},
		{".", refused},
		{":443", refused},
		{"secure.example.com:x", refused},
		{"secure.example.com:443:443", refused},
		{"evil@secure.example.com", refused},
		{"secure.example.com/x", refused},
		{"secure.example.com\\x", refused},
		{"secure example.com", refused},
		{"se\x00cure", refused},
		{"sécure.example.com", refused},
		{"*.example.com", refused},
		{"secure%2eexample.com", refused},
		{"::1", refused},
		{"[::1", refused},
		{"[::1]x", refused},
		{"[::1]:x", refused},
		{"[1.2.3.4]", refused},
		{"[fe80::1%25eth0]", refused},
		{"[evil.com]", refused},
	} {
		got, ok := normalizeAuthority(tc.in)
		if !ok {
			got = refused
		}
		if got != tc.want {
			t.Errorf("normalizeAuthority(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAuthorityPatterns(t *testing.T) {
	for _, tc := range []struct {
		pattern, host string
		want          bool
	}{
		{"secure.example.com", "secure.example.com", true},
		{"Secure.Example.com.", "secure.example.com", true},
		{"*.example.com", "a.example.com", true},
		{"*.Example.COM", "a.b.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "aexample.com", false},
		{"[::1]", "[::1]:80", true},
		{"::1", "[::1]", true},
		{"[0::1]", "[::1]", true},
	} {
		host, ok := normalizeAuthority(tc.host)
		if !ok {
			t.Fatalf("host %q does not normalize", tc.host)
		}
		if got := authorityMatches(normalizeAuthorityPattern(tc.pattern), host); got != tc.want {
			t.Errorf("pattern %q, host %q: %v, want %v", tc.pattern, tc.host, got, tc.want)
		}
	}
}

func TestNormalizePrefix(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/admin/", "/admin/"},
		{"/api", "/api"},
		{"/café/", "/caf%C3%A9/"},
		{"/caf%c3%a9/", "/caf%C3%A9/"},
		{"/%7Euser/", "/~user/"},
		{"/a b/", "/a%20b/"},
		{"/%2e", "/%2E"}, // an encoded dot stays encoded: it then matches no normalized path
		{"/%zz", "/%zz"},
	} {
		if got := normalizePrefix(tc.in); got != tc.want {
			t.Errorf("normalizePrefix(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for in, want := range map[string]string{
		"/a":              "/a",
		"/caf%C3%A9/":     "/caf\xc3\xa9/",
		"/a%2Bb%3A":       "/a+b:",
		"/%2561dmin":      "/%61dmin", // decoded once, as an upstream does
		"/%zz":            "/%zz",
		"/%":              "/%",
		"/%4":             "/%4",
		"/a%20b%7C%5B%5D": "/a b|[]",
	} {
		if got := percentDecode(in); got != want {
			t.Errorf("percentDecode(%q) = %q, want %q", in, got, want)
		}
	}
	for _, tc := range []struct {
		path, prefix string
		ignoreCase   bool
		want         bool
	}{
		{"/admin/x", "/admin/", false, true},
		{"/ADMIN/x", "/admin/", false, false},
		{"/ADMIN/x", "/admin/", true, true},
		{"/Admin/x", "/aDMIN/", true, true},
		{"/adm", "/admin/", true, false},
		{"/caf%C3%A9/x", "/caf%C3%A9/", true, true},
		{"/\u212a", "/k", true, false}, // KELVIN SIGN folds to k in Unicode, not in ASCII
	} {
		if got := hasPathPrefix(tc.path, tc.prefix, tc.ignoreCase); got != tc.want {
			t.Errorf("hasPathPrefix(%q, %q, %v) = %v, want %v", tc.path, tc.prefix, tc.ignoreCase, got, tc.want)
		}
	}
}
