package extauthz

import (
	"slices"
	"strings"
	"testing"
)

// fuzzRoutes is a small table with a catch-all last: prefixes of letters, with and without
// ignore_case, of raw UTF-8 and of sub-delims, and one without a trailing slash.
func fuzzRoutes() []Route {
	return []Route{
		{Name: "admin", PathPrefix: "/admin/"},
		{Name: "api", PathPrefix: "/API/v1/", IgnoreCase: true},
		{Name: "cafe", PathPrefix: "/café/"},
		{Name: "plus", PathPrefix: "/v1/a+b:c@d/"},
		{Name: "tilde", PathPrefix: "/%7Euser/"},
		{Name: "space", PathPrefix: "/a b/"},
		{Name: "pub", PathPrefix: "/pub"},
		{Name: "all", PathPrefix: "/"},
	}
}

// FuzzNormalPath (issue 9 finding 3): normalizePath never panics; what it accepts is in a
// normal form that is idempotent, has no dot segment, no empty segment and no character or
// escape it refuses; and route selection on it never picks a route whose prefix the decoded
// path does not start with, nor passes over an earlier route whose prefix it does (the bypass).
func FuzzNormalPath(f *testing.F) {
	for _, s := range []string{
		"", "/", "*", "/admin/x", "/%61dmin/x", "/admi%6E/x", "/admi%6e/x", "/admin;/x", "/x/..;/admin/x",
		"/ADMIN/x", "//admin", "/%2e%2e/admin", "/%2E%2E/admin", "/public/../admin", "/./admin", "/admin%2fx",
		"/admin%5Cx", "/admin\\x", "/%", "/%4", "/%zz", "/a%00", "/\x00", "/\x7f", "/caf\xc3\xa9/", "/caf%c3%a9/x",
		"/%2561dmin", "/a b/c", "/a%20b/c", "/v1/a%2Bb%3Ac%40d/x", "/v1/a+b:c@d/x", "/~user/x", "/%7euser/x",
		"/%41pi/V1/x", "/pub?x=/admin/", "/pubx", "/a#/../admin", "/admin/?", "?/admin/", "/%3b", "/a/.../b",
		"/\u212a", "/%E2%84%AA", "/api/v1/x", "/public/%252E%252E/admin", "/a%252fb", "/a%255Cb", "/a%25%32%45b",
		"/a%25252E", "/a%2525", "/a%252",
	} {
		f.Add(s)
	}
	table, err := newRouteTable(fuzzRoutes())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		n, ok := normalizePath(raw)
		if !ok {
			return
		}
		if n2, ok2 := normalizePath(n); !ok2 || n2 != n {
			t.Fatalf("not idempotent: %q → %q → %q (ok %v)", raw, n, n2, ok2)
		}
		if n == "" || n[0] != '/' {
			t.Fatalf("%q → %q does not start with /", raw, n)
		}
		if strings.Contains(n, "//") {
			t.Fatalf("%q → %q has an empty segment", raw, n)
		}
		segs := strings.Split(n[1:], "/")
		for _, seg := range segs {
			if seg == "." || seg == ".." {
				t.Fatalf("%q → %q has a dot segment", raw, n)
			}
		}
		for i := 0; i < len(n); i++ {
			c := n[i]
			if c < 0x21 || c >= 0x7f || strings.IndexByte(`\;?#"<>[]^`+"`{|}", c) >= 0 {
				t.Fatalf("%q → %q holds %q", raw, n, c)
			}
			if c != '%' {
				continue
			}
			if i+2 >= len(n) || !isUpperHex(n[i+1]) || !isUpperHex(n[i+2]) {
				t.Fatalf("%q → %q has an escape that is not two upper-case hex digits", raw, n)
			}
			hi, _ := unhex(n[i+1])
			lo, _ := unhex(n[i+2])
			if v := hi<<4 | lo; isUnreserved(v) || v == '/' || v == '\\' || v == ';' || v < 0x20 || v == 0x7f {
				t.Fatalf("%q → %q keeps an escape of %q", raw, n, v)
			}
		}
		// Decoding keeps the segments: the upstream resolves the path we matched.
		decoded := percentDecode(n)
		if got := strings.Split(decoded[1:], "/"); len(got) != len(segs) {
			t.Fatalf("%q → %q decodes to %q, another number of segments", raw, n, decoded)
		}
		// ... and so does decoding twice, for an upstream behind a proxy that decodes too: no
		// "/", "\" or dot segment appears (docs/decisions.md#path-normal-form).
		twice := percentDecode(decoded)
		got := strings.Split(twice[1:], "/")
		if len(got) != len(segs) || strings.IndexByte(twice, '\\') >= 0 || slices.Contains(got, ".") || slices.Contains(got, "..") {
			t.Fatalf("%q → %q decodes twice to %q, another path", raw, n, twice)
		}

		r, _ := table.selectRoute("", "x", n, "GET")
		if r == nil {
			t.Fatalf("%q → %q fits no route, but the table ends in a catch-all", raw, n)
		}
		for _, c := range table.ordered {
			fits := hasPathPrefix(decoded, percentDecode(normalizePrefix(c.PathPrefix)), c.IgnoreCase)
			if c.Route == r {
				if !fits {
					t.Fatalf("%q → %q (decoded %q) selected %q, whose prefix %q it does not start with", raw, n, decoded, r.Name, c.PathPrefix)
				}
				break
			}
			if fits {
				t.Fatalf("%q → %q (decoded %q) starts with %q's prefix %q but selected %q", raw, n, decoded, c.Name, c.PathPrefix, r.Name)
			}
		}
	})
}

func isUpperHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }
