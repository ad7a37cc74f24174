package extauthz_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/extauthz"
)

// Route selection in normal form (docs/decisions.md#path-normal-form; issue 9 findings 3 and 8): an encoded letter,
// a `;` path parameter, a letter-case variant or a trailing dot in the host must never carry a
// request for a protected route past it to a catch-all public route. Each case goes through the
// real gRPC server and through forward-auth over a real HTTP server, in each header family.

// selectionRoutes: four protected routes (no credentials → 401 from them) before a public
// catch-all that allows everything (200). A 200 for a protected path is therefore the bypass.
func selectionRoutes(ignoreCase bool) []extauthz.Route {
	jwt := func(name string) extauthz.Route {
		return extauthz.Route{Name: name, Auth: extauthz.AuthJWT, Providers: []string{"corp"}, Upstream: extauthz.UpstreamPassthrough}
	}
	admin := jwt("admin")
	admin.PathPrefix, admin.IgnoreCase = "/admin/", ignoreCase
	secure := jwt("secure")
	secure.Authority = "secure.example.com"
	v6 := jwt("v6")
	v6.Authority = "[::1]"
	wild := jwt("wild")
	wild.Authority = "*.internal.example"
	cafe := jwt("cafe")
	cafe.PathPrefix = "/café/" // raw UTF-8 in the configuration: clients send it encoded
	plus := jwt("plus")
	plus.PathPrefix = "/v1/a+b:c/" // sub-delims: an upstream decodes %2B and %3A to them
	return []extauthz.Route{admin, secure, v6, wild, cafe, plus,
		{Name: "public", PathPrefix: "/", Auth: extauthz.AuthNone, Upstream: extauthz.UpstreamRemove}}
}

// outcome is a decision as the client sees it: the HTTP status (200 for allowed) and body error.
type outcome struct {
	status int
	err    string
}

var (
	protected = outcome{401, "unauthorized"}  // a protected route decided
	refused   = outcome{403, "access_denied"} // no route fits
	catchAll  = outcome{200, ""}              // the public catch-all allowed it
)

func (o outcome) String() string { return fmt.Sprintf("%d %s", o.status, o.err) }

type selectionCase struct {
	authority, path string
	want            outcome
	// inRequestLine is false for paths Go's HTTP server refuses (400) before any handler runs, so
	// the `request` family (the path is the request's own) cannot carry them.
	notInRequestLine bool
}

func selectionCases(ignoreCase bool) []selectionCase {
	upper := catchAll // a case-sensitive upstream serves /ADMIN/ as another resource
	if ignoreCase {
		upper = protected
	}
	return []selectionCase{
		{"x", "/admin/x", protected, false},
		{"x", "/public/x", catchAll, false},
		// Unreserved characters percent-encoded are the same path (RFC 3986 §6.2.2.2).
		{"x", "/%61dmin/x", protected, false},
		{"x", "/admi%6E/x", protected, false},
		{"x", "/admi%6e/x", protected, false},
		{"x", "/%61%64%6D%69%6E/x", protected, false},
		{"x", "/admin%2Fx", refused, false},
		{"x", "/admin/x?next=/%2e%2e/y", protected, false}, // the query is not the path
		{"x", "/%7Eadmin/x", catchAll, false},              // "/~admin/x"
		{"x", "/caf%C3%A9/x", protected, false},
		{"x", "/caf%c3%a9/x", protected, false},
		{"x", "/v1/a+b:c/x", protected, false},
		{"x", "/v1/a%2Bb%3ac/x", protected, false},
		{"x", "/v1/a%2bb:c/x", protected, false},
		// Path parameters, which Tomcat and Spring strip before routing.
		{"x", "/admin;/x", refused, false},
		{"x", "/admin;jsessionid=1/x", refused, false},
		{"x", "/x/..;/admin/x", refused, false},
		{"x", "/public/..;/admin/x", refused, false},
		// Letter case.
		{"x", "/ADMIN/x", upper, false},
		{"x", "/Admin/x", upper, false},
		{"x", "/%41DMIN/x", upper, false},
		// Dot segments, empty segments and encoded separators.
		{"x", "//admin", refused, false},
		{"x", "//admin/x", refused, false},
		{"x", "/public//admin/x", refused, false},
		{"x", "/%2e%2e/admin", refused, false},
		{"x", "/%2E%2E/admin/x", refused, false},
		{"x", "/public/../admin/x", refused, false},
		{"x", "/public/./admin/x", refused, false},
		{"x", "/public/%2e/admin/x", refused, false},
		{"x", "/public%5c..%5cadmin/x", refused, false},
		{"x", "/public/%2561dmin/x", catchAll, false}, // %25 stays encoded: "/public/%2561dmin/x"
		// Double-encoded "/", "\" and ".": an upstream that decodes twice reads /public/../admin/x.
		{"x", "/public/%252E%252E/admin/x", refused, false},
		{"x", "/public/%252e%252e/admin/x", refused, false},
		{"x", "/public%252Fadmin/x", refused, false},
		{"x", "/public%252fadmin/x", refused, false},
		{"x", "/public%255C..%255Cadmin/x", refused, false},
		{"x", "/public%255c..%255cadmin/x", refused, false},
		{"x", "/public/%25252E%25252E/admin/x", refused, false}, // and thrice
		{"x", "/public/%252a/x", catchAll, false},               // another double-encoded byte is safe
		// Invalid percent-encodings: Go's own server answers 400 to these in a request line.
		{"x", "/admin/x%", refused, true},
		{"x", "/admin/%4", refused, true},
		{"x", "/%zzadmin/x", refused, true},
		{"x", "/%6", refused, true},
		// Not a path.
		{"x", "admin/x", refused, true},
		{"x", "*", refused, true},
		// Authority (finding 8).
		{"secure.example.com", "/", protected, false},
		{"secure.example.com.", "/", protected, false},
		{"Secure.Example.COM.:443", "/", protected, false},
		{"SECURE.EXAMPLE.COM:8443", "/public/x", protected, false},
		{"secure.example.com..", "/", refused, false}, // "a.." is not made valid
		{".secure.example.com", "/", refused, false},
		{"secure.example.com:", "/", protected, false},
		{"secure.example.com:x", "/", refused, false},
		{"[::1]:80", "/", protected, false},
		{"[::1]", "/", protected, false},
		{"a.internal.example.", "/", protected, false},
		{"A.B.Internal.Example:1", "/", protected, false},
		{"internal.example", "/", catchAll, false}, // *.internal.example does not match itself
		{"evil@secure.example.com", "/", refused, false},
	}
}

// rawPathCases are the bytes an HTTP client library refuses to send: control characters and
// non-ASCII. Through gRPC they arrive as they are (protobuf strings are valid UTF-8, so invalid
// UTF-8 is covered by the normalizer's own tests).
var rawPathCases = []selectionCase{
	{"x", "/adm\x00in/x", refused, true},
	{"x", "/admin/x\x00", refused, true},
	{"x", "/adm\x7fin/x", refused, true},
	{"x", "/adm\tin/x", refused, true},
	{"x", "/admin\\x", refused, true},
	{"x", "/public\\..\\admin/x", refused, true},
	{"x", "/caf\xc3\xa9/x", refused, true},
}

func grpcOutcome(t *testing.T, r *rig, authority, path string, opts ...reqOpt) outcome {
	t.Helper()
	resp := r.check(checkReq(authority, path, "GET", nil, opts...))
	if resp.GetOkResponse() != nil {
		return outcome{200, ""}
	}
	d := resp.GetDeniedResponse()
	var body map[string]string
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
		t.Fatalf("denial body is not JSON: %q", d.GetBody())
	}
	return outcome{int(d.GetStatus().GetCode()), body["error"]}
}

// rawHTTP sends one request to srv exactly as written (no client-side validation or cleaning)
// and returns the status and body error.
func rawHTTP(t *testing.T, srv *httptest.Server, requestURI string, headers [][2]string) outcome {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\n", requestURI)
	hasHost := false
	for _, h := range headers {
		if strings.EqualFold(h[0], "Host") {
			hasHost = true
		}
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	if !hasHost {
		b.WriteString("Host: tokengate.internal\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	o := outcome{status: resp.StatusCode}
	if resp.StatusCode != 200 {
		var body map[string]string
		raw, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Fatalf("denial body is not JSON: %d %q", resp.StatusCode, raw)
		}
		o.err = body["error"]
	}
	return o
}

func TestRouteSelectionNormalForm(t *testing.T) {
	for _, ignoreCase := range []bool{false, true} {
		t.Run(fmt.Sprintf("ignore_case=%v", ignoreCase), func(t *testing.T) {
			r := newRigWithRoutes(t, selectionRoutes(ignoreCase), 100)
			servers := map[string]*httptest.Server{}
			for _, mode := range []string{"auto", "x-forwarded", "x-original", "request"} {
				srv := httptest.NewServer(extauthz.NewForwardAuth(r.authz, nil, extauthz.ForwardAuthOptions{Headers: mode}))
				t.Cleanup(srv.Close)
				servers[mode] = srv
			}
			transports := []struct {
				name string
				http bool // needs a path an HTTP/1.1 request can carry
				call func(t *testing.T, tc selectionCase) outcome
			}{
				{"grpc", false, func(t *testing.T, tc selectionCase) outcome { return grpcOutcome(t, r, tc.authority, tc.path) }},
				{"forward-auth traefik (auto)", true, func(t *testing.T, tc selectionCase) outcome {
					return rawHTTP(t, servers["auto"], "/authz", [][2]string{{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Host", tc.authority}, {"X-Forwarded-Uri", tc.path}})
				}},
				{"forward-auth x-forwarded", true, func(t *testing.T, tc selectionCase) outcome {
					return rawHTTP(t, servers["x-forwarded"], "/authz", [][2]string{{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Host", tc.authority}, {"X-Forwarded-Uri", tc.path}})
				}},
				{"forward-auth nginx (auto)", true, func(t *testing.T, tc selectionCase) outcome {
					return rawHTTP(t, servers["auto"], "/authz", [][2]string{{"Host", tc.authority}, {"X-Original-Method", "GET"}, {"X-Original-URI", tc.path}})
				}},
				{"forward-auth x-original", true, func(t *testing.T, tc selectionCase) outcome {
					return rawHTTP(t, servers["x-original"], "/authz", [][2]string{{"Host", tc.authority}, {"X-Original-Method", "GET"}, {"X-Original-URI", tc.path}})
				}},
				{"forward-auth request", true, func(t *testing.T, tc selectionCase) outcome {
					return rawHTTP(t, servers["request"], "/authz"+tc.path, [][2]string{{"Host", tc.authority}})
				}},
			}
			for _, tr := range transports {
				t.Run(tr.name, func(t *testing.T) {
					cases := selectionCases(ignoreCase)
					if !tr.http {
						cases = append(cases, rawPathCases...)
					}
					for _, tc := range cases {
						if tr.name == "forward-auth request" && tc.notInRequestLine {
							continue
						}
						if tr.http && strings.Contains(tc.authority, "@") && !strings.Contains(tr.name, "forwarded") {
							continue // Go's server refuses such a Host itself (400)
						}
						if got := tr.call(t, tc); got != tc.want {
							t.Errorf("%s %q: got %v, want %v", tc.authority, tc.path, got, tc.want)
						}
					}
				})
			}
		})
	}
}

// TestNamedRouteUnsafePath: when Envoy names the route, the path does not choose it, but a path
// with no safe normal form is refused all the same (docs/decisions.md#path-normal-form), so that a `;` parameter
// can never reach an upstream that strips it.
func TestNamedRouteUnsafePath(t *testing.T) {
	r := newRigWithRoutes(t, selectionRoutes(false), 100)
	for _, tc := range []struct {
		path string
		want outcome
	}{
		{"/x", catchAll},
		{"/%61dmin/x", catchAll}, // the named route decides: its match is not consulted
		{"/admin;/x", refused},
		{"/x/..;/admin/x", refused},
		{"/x/../admin/x", refused},
		{"/x//admin", refused},
		{"/x%2Fadmin", refused},
		{"/x%zz", refused},
		{"/x\x00", refused},
	} {
		if got := grpcOutcome(t, r, "x", tc.path, withRoute("public")); got != tc.want {
			t.Errorf("named route, %q: got %v, want %v", tc.path, got, tc.want)
		}
	}
	// Unknown names stay 403 whatever the path.
	if got := grpcOutcome(t, r, "x", "/x", withRoute("nope")); got != refused {
		t.Errorf("unknown route: got %v", got)
	}
}
