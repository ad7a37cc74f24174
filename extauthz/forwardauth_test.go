package extauthz_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/extauthz"
)

// Forward-auth header families (docs/decisions.md#forward-auth-header-families, server.forward_auth_headers; issue 9 finding 4):
// a client-sent X-Forwarded-Uri must never outrank the X-Original-URI nginx sets.

func familyRoutes() []extauthz.Route {
	return []extauthz.Route{
		{Name: "admin", PathPrefix: "/admin/", Auth: extauthz.AuthJWT, Providers: []string{"corp"}, Upstream: extauthz.UpstreamPassthrough},
		{Name: "del", PathPrefix: "/items/", Methods: []string{"DELETE"}, Auth: extauthz.AuthJWT, Providers: []string{"corp"}, Upstream: extauthz.UpstreamPassthrough},
		{Name: "secure", Authority: "secure.example.com", Auth: extauthz.AuthJWT, Providers: []string{"corp"}, Upstream: extauthz.UpstreamPassthrough},
		{Name: "public", PathPrefix: "/", Auth: extauthz.AuthNone, Upstream: extauthz.UpstreamRemove},
	}
}

var badForward = outcome{400, "invalid_request"}

func TestForwardAuthHeaderFamilies(t *testing.T) {
	r := newRigWithRoutes(t, familyRoutes(), 100)
	servers := map[string]*httptest.Server{}
	for _, mode := range []string{"", "auto", "x-forwarded", "x-original", "request"} {
		srv := httptest.NewServer(extauthz.NewForwardAuth(r.authz, nil, extauthz.ForwardAuthOptions{Headers: mode}))
		t.Cleanup(srv.Close)
		servers[mode] = srv
	}
	type h = [2]string
	// nginx as shipped before the fix of item 13 sends both families; a client adds its own.
	spoofed := []h{{"Host", "x"}, {"X-Original-URI", "/admin/x"}, {"X-Original-Method", "GET"}, {"X-Forwarded-Uri", "/public/x"}}
	agreeing := []h{{"Host", "x"}, {"X-Original-URI", "/admin/x"}, {"X-Original-Method", "GET"},
		{"X-Forwarded-Uri", "/admin/x"}, {"X-Forwarded-Method", "GET"}, {"X-Forwarded-Host", "x"}}
	cases := []struct {
		name    string
		modes   []string // "" is the default (auto)
		method  string   // of the request to /authz; GET when empty
		uri     string   // request-target; /authz when empty
		headers []h
		want    outcome
	}{
		// auto: the first family present, in the order x-forwarded, x-original, request.
		{"nginx family alone", []string{"", "auto", "x-original"}, "", "", []h{{"Host", "x"}, {"X-Original-URI", "/admin/x"}, {"X-Original-Method", "GET"}}, protected},
		{"traefik family alone", []string{"", "auto", "x-forwarded"}, "", "", []h{{"X-Forwarded-Uri", "/admin/x"}, {"X-Forwarded-Method", "GET"}, {"X-Forwarded-Host", "x"}}, protected},
		{"envoy http_service alone", []string{"", "auto", "request"}, "", "/authz/admin/x", nil, protected},
		{"envoy http_service, public", []string{"", "auto", "request"}, "", "/authz/public/x", nil, catchAll},
		// The attack: a client's X-Forwarded-Uri next to nginx's X-Original-URI.
		{"spoofed X-Forwarded-Uri, auto", []string{"", "auto"}, "", "", spoofed, badForward},
		{"spoofed X-Forwarded-Uri, x-original", []string{"x-original"}, "", "", spoofed, protected},
		{"spoofed X-Forwarded-Uri, request", []string{"request"}, "", "/authz/admin/x", []h{{"X-Forwarded-Uri", "/public/x"}, {"X-Original-URI", "/public/x"}}, protected},
		{"x-forwarded trusts its family only", []string{"x-forwarded"}, "", "", spoofed, catchAll},
		{"both families agree", []string{"", "auto", "x-original", "x-forwarded"}, "", "", agreeing, protected},
		{"both families agree, host in another case and with a port", []string{"", "auto"}, "", "",
			[]h{{"Host", "Secure.Example.com:443"}, {"X-Original-URI", "/x"}, {"X-Forwarded-Uri", "/x"}, {"X-Forwarded-Host", "secure.example.com"}}, protected},
		{"URIs disagree in the query", []string{"", "auto"}, "", "",
			[]h{{"X-Original-URI", "/admin/x?a"}, {"X-Forwarded-Uri", "/admin/x"}}, badForward},
		{"methods disagree", []string{"", "auto"}, "", "",
			[]h{{"X-Original-URI", "/items/1"}, {"X-Original-Method", "DELETE"}, {"X-Forwarded-Uri", "/items/1"}, {"X-Forwarded-Method", "GET"}}, badForward},
		{"methods disagree, x-original", []string{"x-original"}, "", "",
			[]h{{"X-Original-URI", "/items/1"}, {"X-Original-Method", "DELETE"}, {"X-Forwarded-Uri", "/items/1"}, {"X-Forwarded-Method", "GET"}}, protected},
		{"a missing method falls back to the request's, and then disagrees", []string{"", "auto"}, "", "",
			[]h{{"X-Original-URI", "/items/1"}, {"X-Original-Method", "DELETE"}, {"X-Forwarded-Uri", "/items/1"}}, badForward},
		{"hosts disagree (X-Forwarded-Host against Host)", []string{"", "auto"}, "", "",
			[]h{{"Host", "secure.example.com"}, {"X-Original-URI", "/x"}, {"X-Forwarded-Uri", "/x"}, {"X-Forwarded-Host", "other.example.com"}}, badForward},
		{"hosts disagree, x-original reads Host", []string{"x-original"}, "", "",
			[]h{{"Host", "secure.example.com"}, {"X-Original-URI", "/x"}, {"X-Forwarded-Uri", "/x"}, {"X-Forwarded-Host", "other.example.com"}}, protected},
		{"hosts disagree, x-forwarded reads X-Forwarded-Host", []string{"x-forwarded"}, "", "",
			[]h{{"Host", "secure.example.com"}, {"X-Original-URI", "/x"}, {"X-Forwarded-Uri", "/x"}, {"X-Forwarded-Host", "other.example.com"}}, catchAll},
		// Fallbacks of a present family.
		{"x-original without method: the request's own", []string{"", "auto", "x-original"}, "DELETE", "", []h{{"X-Original-URI", "/items/1"}}, protected},
		{"x-forwarded without method or host: the request's own", []string{"", "auto", "x-forwarded"}, "DELETE", "", []h{{"Host", "secure.example.com"}, {"X-Forwarded-Uri", "/items/1"}}, protected},
		{"a method header without its URI header is not a family", []string{"", "auto"}, "", "/authz/items/1", []h{{"X-Original-Method", "DELETE"}, {"X-Forwarded-Method", "DELETE"}}, catchAll},
		{"traefik method", []string{"", "auto", "x-forwarded"}, "", "", []h{{"X-Forwarded-Method", "DELETE"}, {"X-Forwarded-Uri", "/items/1"}}, protected},
		// A header sent twice within the family read.
		{"two X-Forwarded-Uri", []string{"", "auto", "x-forwarded"}, "", "", []h{{"X-Forwarded-Uri", "/public/x"}, {"X-Forwarded-Uri", "/admin/x"}}, badForward},
		{"two X-Forwarded-Method", []string{"", "auto", "x-forwarded"}, "", "", []h{{"X-Forwarded-Uri", "/items/1"}, {"X-Forwarded-Method", "GET"}, {"X-Forwarded-Method", "DELETE"}}, badForward},
		{"two X-Forwarded-Host", []string{"", "auto", "x-forwarded"}, "", "", []h{{"X-Forwarded-Uri", "/x"}, {"X-Forwarded-Host", "x"}, {"X-Forwarded-Host", "secure.example.com"}}, badForward},
		{"two X-Original-URI", []string{"", "auto", "x-original"}, "", "", []h{{"X-Original-URI", "/public/x"}, {"X-Original-URI", "/admin/x"}}, badForward},
		{"two X-Original-Method", []string{"", "auto", "x-original"}, "", "", []h{{"X-Original-URI", "/items/1"}, {"X-Original-Method", "GET"}, {"X-Original-Method", "DELETE"}}, badForward},
		{"two X-Forwarded-Uri under x-original are ignored", []string{"x-original"}, "", "", []h{{"X-Original-URI", "/admin/x"}, {"X-Forwarded-Uri", "/a"}, {"X-Forwarded-Uri", "/b"}}, protected},
		// The family an explicit mode reads is absent, or its URI header is empty.
		{"x-forwarded without X-Forwarded-Uri", []string{"x-forwarded"}, "", "/authz/public/x", []h{{"X-Original-URI", "/public/x"}}, badForward},
		{"x-original without X-Original-URI", []string{"x-original"}, "", "/authz/public/x", []h{{"X-Forwarded-Uri", "/public/x"}}, badForward},
		{"empty X-Forwarded-Uri", []string{"", "auto", "x-forwarded"}, "", "/authz/public/x", []h{{"X-Forwarded-Uri", ""}}, badForward},
		{"empty X-Original-URI", []string{"", "auto", "x-original"}, "", "/authz/public/x", []h{{"X-Original-URI", ""}}, badForward},
	}
	for _, tc := range cases {
		for _, mode := range tc.modes {
			uri := tc.uri
			if uri == "" {
				uri = "/authz"
			}
			method := tc.method
			if method == "" {
				method = "GET"
			}
			got := rawHTTPMethod(t, servers[mode], method, uri, tc.headers)
			if got != tc.want {
				t.Errorf("%s (forward_auth_headers %q): got %v, want %v", tc.name, mode, got, tc.want)
			}
		}
	}
}

// rawHTTPMethod is rawHTTP with a method other than GET.
func rawHTTPMethod(t *testing.T, srv *httptest.Server, method, requestURI string, headers [][2]string) outcome {
	t.Helper()
	if method == "GET" {
		return rawHTTP(t, srv, requestURI, headers)
	}
	req, err := http.NewRequest(method, srv.URL+requestURI, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		if strings.EqualFold(h[0], "Host") {
			req.Host = h[1]
		} else {
			req.Header.Add(h[0], h[1])
		}
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	o := outcome{status: resp.StatusCode}
	if resp.StatusCode != 200 {
		var body struct{ Error string }
		if err := jsonDecode(resp, &body); err != nil {
			t.Fatalf("denial body: %v", err)
		}
		o.err = body.Error
	}
	return o
}

func jsonDecode(resp *http.Response, v any) error {
	return json.NewDecoder(resp.Body).Decode(v)
}

// TestForwardAuthDenialShape: a conflict is a complete denial (docs/decisions.md#the-decision-table) (400, Bearer
// challenge with invalid_request, JSON body), and Decide is never reached for it.
func TestForwardAuthDenialShape(t *testing.T) {
	r := newRigWithRoutes(t, familyRoutes(), 100)
	rec := &recordingDecider{next: r.authz}
	srv := httptest.NewServer(extauthz.NewForwardAuth(rec, nil, extauthz.ForwardAuthOptions{}))
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest("GET", srv.URL+"/authz", nil)
	req.Header.Set("X-Original-URI", "/admin/x")
	req.Header.Set("X-Forwarded-Uri", "/public/x")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	if err := jsonDecode(resp, &body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 400 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="tokengate", error="invalid_request"` ||
		resp.Header.Get("Content-Type") != "application/json" || body["error"] != "invalid_request" || body["error_description"] == "" || len(body) != 2 {
		t.Fatalf("denial: %d %q %q %v", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), resp.Header.Get("Content-Type"), body)
	}
	if strings.Contains(body["error_description"], "/public/x") || strings.Contains(body["error_description"], "/admin/x") {
		t.Errorf("description echoes the request: %q", body["error_description"])
	}
	if n := rec.count(); n != 0 {
		t.Errorf("Decide was called %d times for a conflicting request, want 0", n)
	}
}

// recordingDecider passes each request on to the real Authorizer and keeps a copy of it.
type recordingDecider struct {
	next extauthz.Decider
	mu   sync.Mutex
	reqs []extauthz.Request
}

func (d *recordingDecider) Decide(ctx context.Context, req extauthz.Request) extauthz.Decision {
	d.mu.Lock()
	d.reqs = append(d.reqs, req)
	d.mu.Unlock()
	return d.next.Decide(ctx, req)
}

func (d *recordingDecider) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.reqs)
}

func (d *recordingDecider) last(t *testing.T) extauthz.Request {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.reqs) == 0 {
		t.Fatal("Decide was not called")
	}
	return d.reqs[len(d.reqs)-1]
}

// TestForwardAuthClientIP: Request.ClientIP is the socket peer, or behind a trusted proxy the
// right-most untrusted X-Forwarded-For address (docs/issuer.md#failure-limiter). The requests come from
// 127.0.0.2, a distinct loopback source address, rather than a faked RemoteAddr.
func TestForwardAuthClientIP(t *testing.T) {
	r := newRigWithRoutes(t, familyRoutes(), 100)
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}).DialContext}}
	t.Cleanup(client.CloseIdleConnections)
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		xff     []string
		want    string
	}{
		{"no trusted proxies: the peer", nil, []string{"203.0.113.7"}, "127.0.0.2"},
		{"no X-Forwarded-For", loopback, nil, "127.0.0.2"},
		{"trusted peer: the client it names", loopback, []string{"203.0.113.7"}, "203.0.113.7"},
		{"right-most untrusted", loopback, []string{"198.51.100.1, 203.0.113.7", "127.0.0.9"}, "203.0.113.7"},
		{"another trusted network", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, []string{"203.0.113.7"}, "127.0.0.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recordingDecider{next: r.authz}
			srv := httptest.NewServer(extauthz.NewForwardAuth(rec, nil, extauthz.ForwardAuthOptions{TrustedProxies: tc.trusted}))
			defer srv.Close()
			req, _ := http.NewRequest("GET", srv.URL+"/authz/public/x", nil)
			for _, v := range tc.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := rec.last(t).ClientIP.String(); got != tc.want {
				t.Errorf("ClientIP = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestForwardAuthUnknownHeaders: a forward_auth_headers value the configuration should have
// refused is a wiring mistake; forward-auth then fails closed (503) instead of guessing a family.
func TestForwardAuthUnknownHeaders(t *testing.T) {
	r := newRigWithRoutes(t, familyRoutes(), 100)
	if err := (extauthz.ForwardAuthOptions{Headers: "x-forwarded-uri"}).Validate(); err == nil {
		t.Error("Validate accepted an unknown forward_auth_headers value")
	}
	for _, ok := range []string{"", "auto", "x-forwarded", "x-original", "request"} {
		if err := (extauthz.ForwardAuthOptions{Headers: ok}).Validate(); err != nil {
			t.Errorf("Validate(%q): %v", ok, err)
		}
	}
	rec := &recordingDecider{next: r.authz}
	srv := httptest.NewServer(extauthz.NewForwardAuth(rec, nil, extauthz.ForwardAuthOptions{Headers: "X-Forwarded"}))
	t.Cleanup(srv.Close)
	if got := rawHTTP(t, srv, "/authz/public/x", nil); got != (outcome{503, "temporarily_unavailable"}) {
		t.Errorf("unknown mode: got %v, want 503", got)
	}
	if rec.count() != 0 {
		t.Error("Decide was called under an unknown mode")
	}
}
