package jwks

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/httpx"
	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/jwks/jwkstest"
	"github.com/tokengate/tokengate/internal/testkit"
)

func TestNewRemoteRefusesBadOptions(t *testing.T) {
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	tests := []struct {
		name string
		opts Options
		want error
	}{
		{"no name", Options{JWKSURI: "https://idp/jwks"}, nil},
		{"neither uri nor discovery", Options{Name: "x"}, nil},
		{"both uri and discovery", Options{Name: "x", JWKSURI: "https://idp/jwks", Discovery: true, Issuer: "https://idp"}, nil},
		{"plain http remote", Options{Name: "x", JWKSURI: "http://idp.example.com/jwks"}, httpx.ErrInsecureURL},
		{"discovery over plain http", Options{Name: "x", Discovery: true, Issuer: "http://idp.example.com"}, httpx.ErrInsecureURL},
		{"TLS verification off", Options{Name: "x", JWKSURI: "https://idp/jwks", HTTPClient: insecure}, ErrInsecureTLS},
		{"negative interval", Options{Name: "x", JWKSURI: "https://idp/jwks", RefreshInterval: -1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRemote(context.Background(), tt.opts)
			if err == nil {
				r.Close()
				t.Fatal("NewRemote accepted the options")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNewRemoteDoesNotBlockAndLoads(t *testing.T) {
	k := jwkstest.MustKey("ES256", "k1")
	srv := jwkstest.NewServer(t, jwkstest.PublicSet(k))
	srv.SetMode(jwkstest.Hang)
	began := time.Now()
	e := start(t, srv, nil)
	if took := time.Since(began); took > time.Second {
		t.Fatalf("NewRemote blocked %v on a hanging server", took)
	}
	if e.r.Keys() != nil {
		t.Fatal("keys present before any fetch succeeded")
	}
	// Not yet loaded: a lookup joins the start-up fetch, bounded by its own ctx.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	began = time.Now()
	if ks := e.r.Lookup(ctx, "k1"); ks != nil {
		t.Fatal("Lookup returned keys from a hanging server")
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("Lookup waited %v, beyond its ctx", took)
	}
	if n := srv.JWKSRequests(); n != 1 {
		t.Fatalf("JWKS requests = %d, want 1 (the lookup joins the start-up fetch)", n)
	}
}

func TestCallerClientIsNotModified(t *testing.T) {
	k := jwkstest.MustKey("ES256", "k1")
	srv := jwkstest.NewTLSServer(t, jwkstest.PublicSet(k))
	client := srv.Client()
	e := start(t, srv, func(o *Options) { o.HTTPClient = client })
	e.waitReady(t)
	if client.CheckRedirect != nil {
		t.Fatal("the caller's http.Client was modified")
	}
	if !e.r.Keys().Has("k1") {
		t.Fatal("kid k1 not loaded over TLS")
	}
}

func TestTLSVerificationIsOn(t *testing.T) {
	k := jwkstest.MustKey("ES256", "k1")
	srv := jwkstest.NewTLSServer(t, jwkstest.PublicSet(k)) // self-signed: the default client must refuse it
	e := start(t, srv, nil)
	c := e.r.refresh(false)
	<-c.done
	if !errors.Is(c.err, ErrConnection) {
		t.Fatalf("err = %v, want %v", c.err, ErrConnection)
	}
	if e.r.Keys() != nil {
		t.Fatal("keys loaded from a server with an untrusted certificate")
	}
}

// TestFailuresKeepLastGoodSet covers docs/upstream.md#caches: after a good fetch, a
// failing refresh (500, hang, garbage, 10 MB, empty keys, ...) keeps the old set and is
// counted as an error.
func TestFailuresKeepLastGoodSet(t *testing.T) {
	good := jwkstest.MustKey("ES256", "good")
	weak, err := jwkstest.NewKeyBits("RS256", "weak", 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mode jwkstest.Mode
		jwks []byte // served in OK mode
		want error
	}{
		{"status 500", jwkstest.Status500, nil, ErrStatus},
		{"status 404", jwkstest.NotFound, nil, ErrStatus},
		{"hang", jwkstest.Hang, nil, ErrTimeout},
		{"garbage", jwkstest.Garbage, nil, ErrInvalidJWKS},
		{"10 MB with Content-Length", jwkstest.Huge, nil, ErrTooLarge},
		{"10 MB chunked", jwkstest.HugeChunked, nil, ErrTooLarge},
		{"connection reset", jwkstest.Reset, nil, ErrConnection},
		{"redirect", jwkstest.Redirect, nil, ErrStatus},
		{"empty keys", jwkstest.OK, []byte(`{"keys":[]}`), jose.ErrNoUsableKeys},
		{"only unusable keys", jwkstest.OK, jwkstest.Set(weak.PublicJWK(), good.PrivateJWK()), jose.ErrNoUsableKeys},
		{"not a set", jwkstest.OK, []byte(`{"keys":{}}`), ErrInvalidJWKS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := jwkstest.NewServer(t, jwkstest.PublicSet(good))
			e := start(t, srv, func(o *Options) { o.FetchTimeout = 500 * time.Millisecond })
			e.waitReady(t)
			before := e.r.Keys()
			// Counted from here: on a loaded machine the start-up fetch may have timed out once.
			errorsBefore, successBefore := e.refreshCount(t, "error"), e.refreshCount(t, "success")
			srv.SetMode(tt.mode)
			if tt.jwks != nil {
				srv.SetJWKS(tt.jwks)
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			allocBefore := ms.TotalAlloc
			c := e.r.refresh(false)
			<-c.done
			runtime.ReadMemStats(&ms)
			if !errors.Is(c.err, tt.want) {
				t.Fatalf("refresh err = %v, want %v", c.err, tt.want)
			}
			if tt.mode == jwkstest.HugeChunked {
				if grew := ms.TotalAlloc - allocBefore; grew > 8<<20 {
					t.Errorf("a 10 MB body allocated %d bytes: not bounded", grew)
				}
			}
			if e.r.Keys() != before || !e.r.Keys().Has("good") {
				t.Fatal("a failed refresh replaced the last good set")
			}
			if got := e.refreshCount(t, "error") - errorsBefore; got != 1 {
				t.Fatalf("error count = %v, want 1", got)
			}
			if got := e.refreshCount(t, "success") - successBefore; got != 0 {
				t.Fatalf("success count = %v, want 0", got)
			}
			logs := e.logs.String()
			if !strings.Contains(logs, "provider=corp") || !strings.Contains(logs, "jwks refresh failed") {
				t.Fatalf("failure not logged with the provider name:\n%s", logs)
			}
			for _, leak := range []string{"not a JWK Set", "internal error", good.PublicJWK()["x"].(string)} {
				if strings.Contains(logs, leak) {
					t.Fatalf("log leaks %q:\n%s", leak, logs)
				}
			}
		})
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	k := jwkstest.MustKey("ES256", "k1")
	srv := jwkstest.NewServer(t, jwkstest.PublicSet(k))
	srv.SetMode(jwkstest.Redirect)
	e := start(t, srv, nil)
	c := e.r.refresh(false)
	<-c.done
	if c.err == nil || e.r.Keys() != nil {
		t.Fatal("a redirected JWKS was loaded")
	}
}

// TestFirstFetchFailsThenRecovers covers docs/upstream.md#caches: a failed first fetch is retried on backoff,
// not after a whole refresh interval.
func TestFirstFetchFailsThenRecovers(t *testing.T) {
	k := jwkstest.MustKey("ES256", "k1")
	srv := jwkstest.NewServer(t, jwkstest.PublicSet(k))
	srv.SetMode(jwkstest.Status500)
	e := start(t, srv, nil) // default backoff: first retry after 0.5–1 s
	if srv.WaitJWKSRequests(1, 5*time.Second) < 1 {
		t.Fatal("no start-up fetch")
	}
	testkit.WaitFor(t, "the failed start-up fetch to be counted", 10*time.Second, 5*time.Millisecond, func() bool { return e.refreshCount(t, "error") >= 1 })
	if e.r.Keys() != nil {
		t.Fatal("keys loaded from a failing server")
	}
	srv.SetMode(jwkstest.OK)
	began := time.Now()
	select {
	case <-e.r.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("did not recover within the backoff window")
	}
	if took := time.Since(began); took > 4*time.Second {
		t.Fatalf("recovery took %v", took)
	}
	if !e.r.Keys().Has("k1") {
		t.Fatal("recovered set lacks k1")
	}
}

func TestBackoffSchedule(t *testing.T) {
	k := jwkstest.MustKey("ES256", "k1")
	srv := jwkstest.NewServer(t, jwkstest.PublicSet(k))
	srv.SetMode(jwkstest.Status500)
	s := newSchedule()
	e := start(t, srv, func(o *Options) { o.after = s.after; o.RefreshInterval = 10 * time.Second })
	// Failures: 1, 2, 4, 8 s, then capped at the 10 s refresh interval; each drawn from the
	// upper half of its step (jitter).
	for i, step := range []time.Duration{1, 2, 4, 8, 10, 10} {
		step *= time.Second
		d := s.next(t)
		if d < step/2 || d > step {
			t.Fatalf("retry %d: delay %v, want in [%v, %v]", i+1, d, step/2, step)
		}
		if i == 5 {
			srv.SetMode(jwkstest.OK)
		}
		s.fire <- time.Now()
	}
	if d := s.next(t); d != 10*time.Second {
		t.Fatalf("after a success: delay %v, want the refresh interval", d)
	}
	e.waitReady(t)
	srv.SetMode(jwkstest.Garbage)
	s.fire <- time.Now()
	if d := s.next(t); d < 500*time.Millisecond || d > time.Second {
		t.Fatalf("after a new failure: delay %v, want the backoff restarted at 1 s", d)
	}
	if !e.r.Keys().Has("k1") {
		t.Fatal("the good set was lost")
	}
	if got := srv.JWKSRequests(); got != 8 {
		t.Fatalf("JWKS requests = %d, want 8", got)
	}
}

func TestCacheControlSchedule(t *testing.T) {
	tests := []struct {
		cacheControl string
		want         time.Duration
	}{
		{"", 15 * time.Minute},
		{"max-age=120", 120 * time.Second},
		{"public, max-age=600, must-revalidate", 10 * time.Minute},
		{"max-age=5", 30 * time.Second},     // clamped up to 30 s
		{"max-age=0", 30 * time.Second},     // clamped up to 30 s
		{"max-age=86400", 15 * time.Minute}, // clamped down to refresh_interval
		{"max-age=99999999999999", 15 * time.Minute},
		{"no-store", 30 * time.Second},
		{"max-age=abc", 30 * time.Second},
		{"max-age=300, max-age=60", 60 * time.Second},
		{"s-maxage=60", 15 * time.Minute},
	}
	k := jwkstest.MustKey("ES256", "k1")
	for _, tt := range tests {
		t.Run(tt.cacheControl, func(t *testing.T) {
			srv := jwkstest.NewServer(t, jwkstest.PublicSet(k))
			srv.SetCacheControl(tt.cacheControl)
			s := newSchedule()
			start(t, srv, func(o *Options) { o.after = s.after })
			if d := s.next(t); d != tt.want {
				t.Fatalf("next refresh in %v, want %v", d, tt.want)
			}
		})
	}
	t.Run("refresh interval below 30s", func(t *testing.T) {
		srv := jwkstest.NewServer(t, jwkstest.PublicSet(k))
		srv.SetCacheControl("max-age=5")
		s := newSchedule()
		start(t, srv, func(o *Options) { o.after = s.after; o.RefreshInterval = 20 * time.Second })
		if d := s.next(t); d != 20*time.Second {
			t.Fatalf("next refresh in %v, want 20s", d)
		}
	})
	t.Run("the loop refreshes when told", func(t *testing.T) {
		srv := jwkstest.NewServer(t, jwkstest.PublicSet(k))
		s := newSchedule()
		e := start(t, srv, func(o *Options) { o.after = s.after })
		s.next(t)
		k2 := jwkstest.MustKey("ES256", "k2")
		srv.SetJWKS(jwkstest.PublicSet(k, k2))
		s.fire <- time.Now()
		s.next(t)
		if srv.JWKSRequests() != 2 || !e.r.Keys().Has("k2") {
			t.Fatal("scheduled refresh did not load the new set")
		}
	})
}

// TestUnknownKidRateLimit: an unknown kid refreshes unless a fetch (the start-up one counts)
// finished less than 10 s before.
func TestUnknownKidRateLimit(t *testing.T) {
	k1 := jwkstest.MustKey("ES256", "k1")
	srv := jwkstest.NewServer(t, jwkstest.PublicSet(k1))
	e := start(t, srv, func(o *Options) { o.after = newSchedule().after })
	e.waitReady(t)
	ctx := context.Background()
	steps := []struct {
		advance time.Duration
		kid     string
		fetches int64
	}{
		{0, "k1", 1},              // known kid: no fetch
		{1 * time.Second, "x", 1}, // the start-up fetch finished 1 s ago
		{8 * time.Second, "y", 1}, // 9 s
		{1 * time.Second, "z", 2}, // 10 s: refresh
		{0, "z", 2},               // still unknown, but a fetch just finished
		{9 * time.Second, "w", 2}, // 9 s
		{2 * time.Second, "", 2},  // no kid and keys present: nothing to look for
		{0, "w", 3},               // 11 s
	}
	for i, st := range steps {
		e.clock.Advance(st.advance)
		ks := e.r.Lookup(ctx, st.kid)
		if ks == nil {
			t.Fatalf("step %d: no keys", i)
		}
		if got := srv.JWKSRequests(); got != st.fetches {
			t.Fatalf("step %d (kid %q): %d fetches, want %d", i, st.kid, got, st.fetches)
		}
	}
	// A failed fetch counts too.
	srv.SetMode(jwkstest.Status500)
	e.clock.Advance(10 * time.Second)
	e.r.Lookup(ctx, "v")
	e.clock.Advance(5 * time.Second)
	e.r.Lookup(ctx, "v")
	if got := srv.JWKSRequests(); got != 4 {
		t.Fatalf("%d fetches, want 4: a failed fetch must also start the 10 s window", got)
	}
	if !e.r.Keys().Has("k1") {
		t.Fatal("a failed refresh dropped the keys")
	}
}

// TestUnknownKidRotation covers docs/upstream.md#caches: a newly published kid is found by the unknown-kid
// refresh; the old kid keeps working while published.
func TestUnknownKidRotation(t *testing.T) {
	k1, k2 := jwkstest.MustKey("ES256", "k1"), jwkstest.MustKey("ES256", "k2")
	srv := jwkstest.NewServer(t, jwkstest.PublicSet(k1))
	e := start(t, srv, func(o *Options) { o.after = newSchedule().after })
	e.waitReady(t)
	srv.SetJWKS(jwkstest.PublicSet(k1, k2))
	e.clock.Advance(10 * time.Second)
	ks := e.r.Lookup(context.Background(), "k2")
	if !ks.Has("k2") || !ks.Has("k1") {
		t.Fatal("rotation: the new kid was not picked up or the old one was lost")
	}
	srv.SetJWKS(jwkstest.PublicSet(k2))
	e.clock.Advance(10 * time.Second)
	if ks := e.r.Lookup(context.Background(), "k3"); ks.Has("k1") || !ks.Has("k2") {
		t.Fatal("a retired kid stayed after a refresh")
	}
}

// TestConcurrentUnknownKids: 50 concurrent lookups of unknown kids cause one fetch, and every
// caller sees its result.
func TestConcurrentUnknownKids(t *testing.T) {
	k1, k2 := jwkstest.MustKey("ES256", "k1"), jwkstest.MustKey("ES256", "k2")
	srv := jwkstest.NewServer(t, jwkstest.PublicSet(k1))
	e := start(t, srv, func(o *Options) { o.after = newSchedule().after })
	e.waitReady(t)
	srv.SetJWKS(jwkstest.PublicSet(k1, k2))
	srv.SetDelay(100 * time.Millisecond) // every caller arrives while the refresh is in flight
	e.clock.Advance(time.Minute)
	var wg sync.WaitGroup
	var mu sync.Mutex
	found := 0
	for range 50 {
		wg.Go(func() {
			if e.r.Lookup(context.Background(), "k2").Has("k2") {
				mu.Lock()
				found++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if got := srv.JWKSRequests(); got != 2 {
		t.Fatalf("JWKS requests = %d, want 2 (start-up + one shared refresh)", got)
	}
	if found != 50 {
		t.Fatalf("%d of 50 callers saw the refreshed set", found)
	}
}

func TestDiscovery(t *testing.T) {
	k := jwkstest.MustKey("ES256", "k1")
	tests := []struct {
		name          string
		issuer        string // document's issuer; "" = the server URL (what we configure)
		jwksURI       string
		mode          jwkstest.Mode
		want          error
		jwksRequested bool
	}{
		{"good", "", "", jwkstest.OK, nil, true},
		{"issuer mismatch", "https://evil.example.com", "", jwkstest.OK, ErrIssuerMismatch, false},
		{"issuer differs by a trailing slash", "SERVER/", "", jwkstest.OK, ErrIssuerMismatch, false},
		{"jwks_uri over plain http to a remote host", "", "http://idp.example.com/jwks", jwkstest.OK, httpx.ErrInsecureURL, false},
		{"404", "", "", jwkstest.NotFound, ErrStatus, false},
		{"500", "", "", jwkstest.Status500, ErrStatus, false},
		{"garbage", "", "", jwkstest.Garbage, ErrDiscovery, false},
		{"huge", "", "", jwkstest.HugeChunked, ErrTooLarge, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := jwkstest.NewServer(t, jwkstest.PublicSet(k))
			iss := strings.ReplaceAll(tt.issuer, "SERVER", srv.URL)
			srv.SetDiscovery(iss, tt.jwksURI, tt.mode)
			e := start(t, srv, func(o *Options) {
				o.JWKSURI, o.Discovery, o.Issuer = "", true, srv.URL
				o.after = newSchedule().after
			})
			c := e.r.refresh(false) // joins the start-up fetch
			<-c.done
			if !errors.Is(c.err, tt.want) || (tt.want == nil && c.err != nil) {
				t.Fatalf("err = %v, want %v", c.err, tt.want)
			}
			if got := srv.JWKSRequests() > 0; got != tt.jwksRequested {
				t.Fatalf("JWKS requested = %v, want %v", got, tt.jwksRequested)
			}
			if (e.r.Keys() != nil) != (tt.want == nil) {
				t.Fatalf("keys loaded = %v", e.r.Keys() != nil)
			}
		})
	}
	t.Run("jwks_uri is kept until a failure", func(t *testing.T) {
		srv := jwkstest.NewServer(t, jwkstest.PublicSet(k))
		// Before start: the first discovery happens at once, and the test clock never fires a
		// retry, so a document set afterwards could be missed.
		srv.SetDiscovery(srv.URL+"/", "", jwkstest.OK)
		e := start(t, srv, func(o *Options) {
			o.JWKSURI, o.Discovery, o.Issuer = "", true, srv.URL+"/"
			o.after = newSchedule().after
		})
		e.waitReady(t)
		for _, step := range []struct {
			mode            jwkstest.Mode
			disc, jwksCount int64
		}{
			{jwkstest.OK, 1, 2},        // refresh reuses the discovered jwks_uri
			{jwkstest.Status500, 1, 3}, // JWKS fails: forget it
			{jwkstest.OK, 2, 4},        // rediscovered
		} {
			srv.SetMode(step.mode)
			c := e.r.refresh(false)
			<-c.done
			if srv.DiscoveryRequests() != step.disc || srv.JWKSRequests() != step.jwksCount {
				t.Fatalf("discovery %d, jwks %d; want %d, %d", srv.DiscoveryRequests(), srv.JWKSRequests(), step.disc, step.jwksCount)
			}
		}
	})
}

func TestCloseStopsPromptly(t *testing.T) {
	k := jwkstest.MustKey("ES256", "k1")
	srv := jwkstest.NewServer(t, jwkstest.PublicSet(k))
	srv.SetMode(jwkstest.Hang)
	e := start(t, srv, nil) // FetchTimeout 10 s
	srv.WaitJWKSRequests(1, 5*time.Second)
	began := time.Now()
	e.r.Close()
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("Close took %v with a hanging fetch", took)
	}
	e.r.Close() // idempotent
	if ks := e.r.Lookup(context.Background(), "k1"); ks != nil {
		t.Fatal("keys after Close without any load")
	}
	if got := e.refreshCount(t, "error"); got != 0 {
		t.Fatalf("closing counted as a refresh error (%v)", got)
	}
}

func TestStatic(t *testing.T) {
	k := jwkstest.MustKey("ES256", "k1")
	s, dropped, err := NewStatic(jwkstest.Set(k.PublicJWK(), map[string]any{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 {
		t.Fatalf("dropped = %q, want the oct key", dropped)
	}
	select {
	case <-s.Ready():
	default:
		t.Fatal("a static source is not ready")
	}
	if !s.Keys().Has("k1") || s.Lookup(context.Background(), "other") != s.Keys() {
		t.Fatal("static lookup")
	}
	s.Close()
	if _, _, err := NewStatic([]byte(`{"keys":[]}`)); !errors.Is(err, jose.ErrNoUsableKeys) {
		t.Fatalf("empty static set: err = %v", err)
	}
}
