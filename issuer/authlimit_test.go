package issuer

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/authlimit"
	"github.com/tokengate/tokengate/internal/metrics"
)

// clientFrom is an HTTP client whose connections leave from the loopback address src (all of
// 127.0.0.0/8 is loopback on Linux), so the server sees a distinct socket peer per address: the
// limiter is tested on the real r.RemoteAddr, not on a faked client IP.
func clientFrom(t testing.TB, src string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// doFrom sends q from the loopback address src, with extra headers.
func (e *env) doFrom(t testing.TB, src string, q req, header http.Header) response {
	t.Helper()
	if q.method == "" {
		q.method = http.MethodPost
	}
	if q.path == "" {
		q.path = PathToken
	}
	r, err := http.NewRequest(q.method, e.srv.URL+q.path, strings.NewReader(q.body))
	if err != nil {
		t.Fatal(err)
	}
	if q.contentType != "" {
		r.Header.Set("Content-Type", q.contentType)
	}
	if q.basic != nil {
		r.Header.Set("Authorization", encodeBasic(q.basic[0], q.basic[1]))
	}
	for k, vs := range header {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	res, err := clientFrom(t, src).Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: body}
}

func tokenReq(id, secret string) req {
	return req{contentType: formCT, basic: basicAuth(id, secret), body: form("grant_type", "client_credentials")}
}

// TestNoLockoutFromElsewhere is issue 9 finding 7 (docs/issuer.md#failure-limiter): wrong secrets for a
// client id sent from one address, however many, never refuse the owner's correct secret from
// another address.
func TestNoLockoutFromElsewhere(t *testing.T) {
	e := newEnv(t, nil)
	for range 20 {
		res := e.doFrom(t, "127.0.0.2", tokenReq(svcID, "wrong"), nil)
		if res.status != http.StatusUnauthorized && res.status != http.StatusTooManyRequests {
			t.Fatalf("wrong secret: status %d", res.status)
		}
	}
	res := e.doFrom(t, "127.0.0.3", tokenReq(svcID, svcSecret), nil)
	if res.status != http.StatusOK {
		t.Fatalf("owner's correct secret from another address: status %d, body %s", res.status, res.body)
	}
	checkTokenResponse(t, res)
}

// introspectReq is an introspection request authenticated as id.
func introspectReq(id, secret, token string) req {
	return req{path: PathIntrospect, contentType: formCT, basic: basicAuth(id, secret), body: introspectForm(token)}
}

// checkSlowDown asserts the answer (docs/issuer.md#failure-limiter; RFC 8628 §3.5 slow_down) of a limited key: 429, slow_down, no-store and
// Retry-After in whole seconds.
func checkSlowDown(t testing.TB, res response, retryAfter string) {
	t.Helper()
	checkOAuthError(t, res, http.StatusTooManyRequests, ErrSlowDown)
	if got := res.header.Get("Retry-After"); got != retryAfter {
		t.Errorf("Retry-After = %q, want %q", got, retryAfter)
	}
}

// TestFailureLimiterByAddress is the failure limiter (docs/issuer.md#failure-limiter),
// through a real server with each caller on its own loopback address:
// (a) five wrong secrets for a client id from one address limit that (client id, address), the
// correct secret from there included, at the token and the introspection endpoints; the owner's
// correct secret from another address works;
// (b) fifty failures over many client ids limit the address, for every client id;
// (d) 60 s after the last failure (the test clock) the key works again.
func TestFailureLimiterByAddress(t *testing.T) {
	e := newEnv(t, nil)
	own := e.getToken(t, svcID, svcSecret).AccessToken

	// (a)
	for k := range authlimit.DefaultClientFailures {
		checkOAuthError(t, e.doFrom(t, "127.0.0.2", tokenReq(svcID, "wrong-"+strconv.Itoa(k)), nil), 401, ErrInvalidClient)
	}
	checkSlowDown(t, e.doFrom(t, "127.0.0.2", tokenReq(svcID, svcSecret), nil), "60")
	checkSlowDown(t, e.doFrom(t, "127.0.0.2", introspectReq(svcID, svcSecret, own), nil), "60")
	if res := e.doFrom(t, "127.0.0.3", tokenReq(svcID, svcSecret), nil); res.status != http.StatusOK {
		t.Fatalf("(a) owner from another address: %d %s", res.status, res.body)
	}
	if res := e.doFrom(t, "127.0.0.3", introspectReq(svcID, svcSecret, own), nil); !strings.Contains(string(res.body), `"active":true`) {
		t.Fatalf("(a) owner introspecting from another address: %d %s", res.status, res.body)
	}
	// Another client from the failing address is not limited by svc's failures.
	if res := e.doFrom(t, "127.0.0.2", tokenReq(rotID, rotNew), nil); res.status != http.StatusOK {
		t.Fatalf("(a) another client from the failing address: %d %s", res.status, res.body)
	}

	// (b) one failure each for fifty client ids, known or not, from 127.0.0.4.
	for k := range authlimit.DefaultIPFailures {
		checkOAuthError(t, e.doFrom(t, "127.0.0.4", tokenReq("spray-"+strconv.Itoa(k), "x"), nil), 401, ErrInvalidClient)
	}
	checkSlowDown(t, e.doFrom(t, "127.0.0.4", tokenReq(rotID, rotNew), nil), "60")
	checkSlowDown(t, e.doFrom(t, "127.0.0.4", introspectReq(rotID, rotNew, own), nil), "60")
	if res := e.doFrom(t, "127.0.0.5", tokenReq(rotID, rotNew), nil); res.status != http.StatusOK {
		t.Fatalf("(b) another address: %d %s", res.status, res.body)
	}

	// (d) Retry-After counts down; at 60 s after the last failure both keys work again.
	e.clock.Advance(30 * time.Second)
	checkSlowDown(t, e.doFrom(t, "127.0.0.2", tokenReq(svcID, svcSecret), nil), "30")
	e.clock.Advance(30 * time.Second)
	if res := e.doFrom(t, "127.0.0.2", tokenReq(svcID, svcSecret), nil); res.status != http.StatusOK {
		t.Fatalf("(d) after 60 s: %d %s", res.status, res.body)
	}
	if res := e.doFrom(t, "127.0.0.4", tokenReq(rotID, rotNew), nil); res.status != http.StatusOK {
		t.Fatalf("(d) address after 60 s: %d %s", res.status, res.body)
	}
}

// TestFailureLimiterTrustedProxies is docs/issuer.md#failure-limiter (trusted proxies): when the socket peer is in
// server.trusted_proxies, the right-most untrusted X-Forwarded-For address is the caller; when it
// is not, a client-written X-Forwarded-For is ignored, so it can neither escape its own key nor
// get someone else's address limited.
func TestFailureLimiterTrustedProxies(t *testing.T) {
	xff := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }
	t.Run("trusted proxy: X-Forwarded-For decides", func(t *testing.T) {
		e := newEnv(t, func(_ *Config, o *Options) {
			o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.6/32")}
		})
		for range authlimit.DefaultClientFailures {
			// The client wrote "198.51.100.1"; the proxy appended the address it saw.
			checkOAuthError(t, e.doFrom(t, "127.0.0.6", tokenReq(svcID, "wrong"), xff("198.51.100.1, 203.0.113.1")), 401, ErrInvalidClient)
		}
		checkSlowDown(t, e.doFrom(t, "127.0.0.6", tokenReq(svcID, svcSecret), xff("203.0.113.1")), "60")
		// Another client behind the same proxy is another caller.
		if res := e.doFrom(t, "127.0.0.6", tokenReq(svcID, svcSecret), xff("203.0.113.2")); res.status != http.StatusOK {
			t.Fatalf("another caller behind the proxy: %d %s", res.status, res.body)
		}
		// The client-written left part is not the key.
		if res := e.doFrom(t, "127.0.0.6", tokenReq(svcID, svcSecret), xff("203.0.113.1, 198.51.100.9")); res.status != http.StatusOK {
			t.Fatalf("right-most untrusted hop: %d %s", res.status, res.body)
		}
		// An address that is not a trusted proxy cannot claim to be the limited caller's proxy.
		if res := e.doFrom(t, "127.0.0.7", tokenReq(svcID, svcSecret), xff("203.0.113.1")); res.status != http.StatusOK {
			t.Fatalf("untrusted peer naming the limited address: %d %s", res.status, res.body)
		}
	})
	t.Run("no trusted proxy: a spoofed X-Forwarded-For is ignored", func(t *testing.T) {
		e := newEnv(t, nil)
		for k := range authlimit.DefaultClientFailures {
			// A new made-up address every time: it must not give a new key.
			spoof := xff("203.0.113." + strconv.Itoa(10+k))
			checkOAuthError(t, e.doFrom(t, "127.0.0.8", tokenReq(svcID, "wrong"), spoof), 401, ErrInvalidClient)
		}
		checkSlowDown(t, e.doFrom(t, "127.0.0.8", tokenReq(svcID, svcSecret), xff("203.0.113.99")), "60")
		// And naming the guesser's address from elsewhere does not lock the owner out.
		if res := e.doFrom(t, "127.0.0.9", tokenReq(svcID, svcSecret), xff("127.0.0.8")); res.status != http.StatusOK {
			t.Fatalf("owner with a spoofed header naming the guesser: %d %s", res.status, res.body)
		}
	})
}

// TestSharedLimiterSurvivesReload: the limiter is the process's (Options.Limiter), shared with
// the authorizer's client_credentials routes: failures the authorizer records count at the token
// endpoint, and an issuer rebuilt on a reload keeps a guesser's penalty.
func TestSharedLimiterSurvivesReload(t *testing.T) {
	var shared *authlimit.Limiter
	e := newEnv(t, func(_ *Config, o *Options) {
		shared = authlimit.New(authlimit.Options{Now: o.Now})
		o.Limiter = shared
	})
	ip := netip.MustParseAddr("127.0.0.10")
	for range authlimit.DefaultClientFailures {
		shared.Fail(svcID, ip) // as a client_credentials route would
	}
	checkSlowDown(t, e.doFrom(t, "127.0.0.10", tokenReq(svcID, svcSecret), nil), "60")

	reloaded, err := New(testConfig(e.srv.URL), Options{Now: e.clock.Now, Limiter: shared, Previous: e.iss})
	if err != nil {
		t.Fatal(err)
	}
	after := &env{iss: reloaded, srv: httptest.NewServer(reloaded.Handler())}
	t.Cleanup(after.srv.Close)
	checkSlowDown(t, after.doFrom(t, "127.0.0.10", tokenReq(svcID, svcSecret), nil), "60")
	if res := after.doFrom(t, "127.0.0.11", tokenReq(svcID, svcSecret), nil); res.status != http.StatusOK {
		t.Fatalf("owner elsewhere after reload: %d %s", res.status, res.body)
	}
}

// TestVerifyClientSecret: the comparison the authorizer's `clients: self` routes use is the token
// endpoint's: rotation slots, unknown clients, empty values, the same two 32-byte constant-time
// compares for every case, and no limiter inside (the caller applies the shared one).
func TestVerifyClientSecret(t *testing.T) {
	e := newEnv(t, nil)
	var (
		mu    sync.Mutex
		calls int
	)
	e.iss.compare = func(a, b []byte) int {
		mu.Lock()
		calls++
		mu.Unlock()
		return subtle.ConstantTimeCompare(a, b)
	}
	cases := []struct {
		name, id, secret string
		want             bool
	}{
		{"right", svcID, svcSecret, true},
		{"wrong", svcID, "wrong", false},
		{"first rotation slot", rotID, rotOld, true},
		{"second rotation slot", rotID, rotNew, true},
		{"another client's secret", rotID, svcSecret, false},
		{"unknown client", "ghost", svcSecret, false},
		{"empty secret", svcID, "", false},
		{"empty id", "", "", false},
		{"special characters are not decoded", specialID, specialSec, true},
	}
	for _, tc := range cases {
		mu.Lock()
		calls = 0
		mu.Unlock()
		if got := e.iss.VerifyClientSecret(tc.id, tc.secret); got != tc.want {
			t.Errorf("%s: VerifyClientSecret = %v, want %v", tc.name, got, tc.want)
		}
		mu.Lock()
		if calls != minCompares {
			t.Errorf("%s: %d compares, want %d", tc.name, calls, minCompares)
		}
		mu.Unlock()
	}
	for range 100 {
		e.iss.VerifyClientSecret(svcID, "wrong")
	}
	if !e.iss.VerifyClientSecret(svcID, svcSecret) {
		t.Error("VerifyClientSecret applied a limiter")
	}
	var none *Issuer
	if none.VerifyClientSecret(svcID, svcSecret) {
		t.Error("nil issuer verified a secret")
	}
}

// TestMetricsUnknownClientIDs (docs/operations.md#health-metrics-and-logs): 10k random client ids
// at the token and introspection endpoints add no metric series (label values never come from
// unauthenticated input).
func TestMetricsUnknownClientIDs(t *testing.T) {
	e := newEnv(t, func(_ *Config, o *Options) {
		// Every request reaches the secret comparison: no address limit in the way.
		o.Limiter = authlimit.New(authlimit.Options{IPFailures: 1 << 20, Now: o.Now})
	})
	e.getToken(t, svcID, svcSecret) // the one legitimate series
	before := countSeries(t, e.metrics)
	const n = 10_000
	for k := range n {
		var b [12]byte
		_, _ = rand.Read(b[:])
		id := hex.EncodeToString(b[:])
		q := tokenReq(id, "x")
		if k%10 == 0 {
			q = introspectReq(id, "x", "x")
		}
		if res := e.do(t, q); res.status != http.StatusUnauthorized {
			t.Fatalf("random client id: status %d", res.status)
		}
	}
	after := countSeries(t, e.metrics)
	if grown := after - before; grown > 5 {
		t.Errorf("%d random client ids added %d series", n, grown)
	}
}

// countSeries gathers m's registry and counts its series, the Go and process collectors'
// included (they do not grow with requests).
func countSeries(t testing.TB, m *metrics.Metrics) int {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		n += len(mf.GetMetric())
	}
	return n
}
