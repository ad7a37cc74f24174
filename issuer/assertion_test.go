package issuer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/authlimit"
	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/jwks"
	"github.com/tokengate/tokengate/internal/replay"
	"github.com/tokengate/tokengate/internal/testkit"
)

// assertion signs a client assertion for pkj with k; over overrides or (nil) removes claims.
func (x *xenv) assertion(t testing.TB, k *jose.SigningKey, jti string, over map[string]any) string {
	t.Helper()
	now := x.clock.Now()
	c := map[string]any{"iss": pkjID, "sub": pkjID, "aud": x.srv.URL + PathToken, "jti": jti,
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
	for n, v := range over {
		if v == nil {
			delete(c, n)
		} else {
			c[n] = v
		}
	}
	tok, err := k.Sign(c, "JWT")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func assertionForm(a string, kv ...string) string {
	return form(append([]string{"grant_type", "client_credentials", "client_assertion_type", ClientAssertionType,
		"client_assertion", a}, kv...)...)
}

// TestClientAssertion is private_key_jwt at the token endpoint (RFC 7523 §2.2, §3), through the
// real HTTP server.
func TestClientAssertion(t *testing.T) {
	x := newXEnv(t)
	at := func(d time.Duration) int64 { return x.clock.Now().Add(d).Unix() }
	good := x.assertion(t, x.client, "once", nil)
	type fn = func() string
	for n, tc := range []struct {
		name   string
		body   fn
		auth   *[2]string
		status int
		code   string
	}{
		{"accepted (aud the token endpoint)", func() string { return assertionForm(good) }, nil, 200, ""},
		{"replayed assertion refused", func() string { return assertionForm(good) }, nil, 401, ErrInvalidClient},
		{"aud the issuer URL, client_id in the body", func() string {
			return assertionForm(x.assertion(t, x.client, "j2",
				map[string]any{"aud": x.srv.URL}), "client_id", pkjID)
		}, nil, 200, ""},
		{"aud as an array", func() string {
			return assertionForm(x.assertion(t, x.client, "j3",
				map[string]any{"aud": []string{"x", x.srv.URL}}))
		}, nil, 200, ""},
		{"exp more than 5 min ahead", func() string {
			return assertionForm(x.assertion(t, x.client, "j4",
				map[string]any{"exp": at(10 * time.Minute)}))
		}, nil, 401, ErrInvalidClient},
		{"expired", func() string {
			return assertionForm(x.assertion(t, x.client, "j5",
				map[string]any{"exp": at(-time.Second)}))
		}, nil, 401, ErrInvalidClient},
		{"no exp", func() string { return assertionForm(x.assertion(t, x.client, "j6", map[string]any{"exp": nil})) }, nil, 401, ErrInvalidClient},
		{"wrong aud", func() string {
			return assertionForm(x.assertion(t, x.client, "j7",
				map[string]any{"aud": "https://elsewhere.example/token"}))
		}, nil, 401, ErrInvalidClient},
		{"signed by another key with the same kid", func() string { return assertionForm(x.assertion(t, x.stranger, "j8", nil)) }, nil, 401, ErrInvalidClient},
		{"iss is not sub", func() string { return assertionForm(x.assertion(t, x.client, "j9", map[string]any{"sub": "alice"})) }, nil, 401, ErrInvalidClient},
		{"no jti", func() string { return assertionForm(x.assertion(t, x.client, "", map[string]any{"jti": nil})) }, nil, 401, ErrInvalidClient},
		{"nbf in the future", func() string {
			return assertionForm(x.assertion(t, x.client, "j10",
				map[string]any{"nbf": at(2 * time.Minute)}))
		}, nil, 401, ErrInvalidClient},
		{"client_id other than iss", func() string { return assertionForm(x.assertion(t, x.client, "j11", nil), "client_id", exchID) }, nil, 401, ErrInvalidClient},
		{"secret client cannot use an assertion", func() string {
			return assertionForm(x.assertion(t, x.client, "j12",
				map[string]any{"iss": exchID, "sub": exchID}))
		}, nil, 401, ErrInvalidClient},
		{"key client cannot use a secret", func() string { return form("grant_type", "client_credentials") }, basicAuth(pkjID, "guess"), 401, ErrInvalidClient},
		{"unknown assertion type", func() string {
			return form("grant_type", "client_credentials", "client_assertion_type", "urn:x",
				"client_assertion", good)
		}, nil, 401, ErrInvalidClient},
		{"assertion without its type", func() string { return form("grant_type", "client_credentials", "client_assertion", good) }, nil, 400, ErrInvalidRequest},
		{"assertion and Basic", func() string { return assertionForm(x.assertion(t, x.client, "j13", nil)) }, basicAuth(pkjID, "x"), 400, ErrInvalidRequest},
		{"malformed assertion", func() string { return assertionForm("not-a-jwt", "client_id", pkjID) }, nil, 401, ErrInvalidClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n >= 2 {
				// Past the failure limiter's window, so each refusal is judged on its own.
				x.clock.Advance(7 * time.Minute)
			}
			res := x.do(t, req{contentType: formCT, basic: tc.auth, body: tc.body()})
			if tc.status == 200 {
				tr := checkTokenResponse(t, res)
				_, c := x.verifyWithServedJWKS(t, tr.AccessToken)
				if c.Subject != pkjID || c.Raw["client_id"] != pkjID {
					t.Errorf("claims %v", c.Raw)
				}
				return
			}
			checkOAuthError(t, res, tc.status, tc.code)
		})
	}
}

// TestClientAssertionLimiter: failed assertions count in the failure limiter like wrong secrets,
// and a limited client is refused 429 slow_down even with a good assertion.
func TestClientAssertionLimiter(t *testing.T) {
	x := newXEnv(t)
	for n := range 5 {
		res := x.do(t, req{contentType: formCT, body: assertionForm(x.assertion(t, x.stranger, "bad"+itoa(int64(n)), nil))})
		checkOAuthError(t, res, 401, ErrInvalidClient)
	}
	res := x.do(t, req{contentType: formCT, body: assertionForm(x.assertion(t, x.client, "good", nil))})
	checkOAuthError(t, res, http.StatusTooManyRequests, ErrSlowDown)
}

// FuzzTokenExchange fuzzes the token-exchange request parser through the handler: whatever the
// form, the answer is a token or an RFC 6749 §5.2 / RFC 8693 error with its status; no panic.
func FuzzTokenExchange(f *testing.F) {
	x := newXEnv(f)
	sub := x.subject(f, x.corp, corpIss, nil)
	for _, s := range []string{
		exchangeForm(sub),
		exchangeForm(sub, "scope", "read", "audience", "billing"),
		exchangeForm(sub, "resource", "orders", "resource", "billing"),
		exchangeForm(sub, "requested_token_type", TokenTypeJWT),
		exchangeForm("a.b.c"),
		form("grant_type", GrantTokenExchange),
		exchangeForm(sub, "actor_token", "x"),
		assertionForm(x.assertion(f, x.client, "f1", nil), "grant_type", GrantTokenExchange),
		"grant_type=" + GrantTokenExchange + "&subject_token=%zz",
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	h := x.iss.Handler()
	allowed := map[int][]string{
		400: {ErrInvalidRequest, ErrUnsupportedGrantType, ErrInvalidScope, ErrInvalidTarget, ErrUnauthorizedClient, ErrInvalidGrant},
		401: {ErrInvalidClient},
		413: {ErrInvalidRequest},
		429: {ErrSlowDown},
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(exchID+":"+exchSecret))
	f.Fuzz(func(t *testing.T, body string, auth bool) {
		r := httptest.NewRequest(http.MethodPost, PathToken, strings.NewReader(body))
		r.RemoteAddr = "127.0.0.1:1234"
		r.Header.Set("Content-Type", formCT)
		if auth {
			r.Header.Set("Authorization", basic)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		res := w.Result()
		b, _ := io.ReadAll(res.Body)
		if res.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%d without no-store", res.StatusCode)
		}
		if res.StatusCode == http.StatusOK {
			var tr tokenResponse
			if err := json.Unmarshal(b, &tr); err != nil || tr.TokenType != "Bearer" || tr.ExpiresIn <= 0 {
				t.Fatalf("bad 200 body %s", b)
			}
			return
		}
		if msg := validErrorBody(b); msg != "" {
			t.Fatalf("%d: %s: %s", res.StatusCode, msg, b)
		}
		var eb struct{ Error string }
		_ = json.Unmarshal(b, &eb)
		for _, c := range allowed[res.StatusCode] {
			if c == eb.Error {
				return
			}
		}
		t.Fatalf("status %d with error %q", res.StatusCode, eb.Error)
	})
}

// TestClientAssertionKeysUnavailableNotCounted: a private_key_jwt client whose jwks_uri is down
// is refused (its assertion cannot be checked) but the refusals are our outage, not the client's
// failures (docs/issuer.md#failure-limiter): they are not counted, so the client is not locked
// out with 429 and is accepted as soon as its keys load.
func TestClientAssertionKeysUnavailableNotCounted(t *testing.T) {
	key := mustKey(t, "ES256", "remote-1")
	var up atomic.Bool
	var fetches atomic.Int64
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(publicJWKS(t, key))
	}))
	t.Cleanup(host.Close)
	clock := testkit.NewClock(time.Now().Truncate(time.Second))
	// Thresholds of one: a single counted failure would refuse the next attempt.
	limiter := authlimit.New(authlimit.Options{ClientFailures: 1, IPFailures: 1, Now: clock.Now})
	const id = "remote-pkj"
	e := newEnv(t, func(c *Config, o *Options) {
		keys, err := jwks.NewRemote(context.Background(), jwks.Options{Name: "client " + id, JWKSURI: host.URL, Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(keys.Close)
		o.Now, o.Limiter = clock.Now, limiter
		c.Clients = append(c.Clients, Client{ID: id, Keys: keys, Scopes: []string{"read"}, Audiences: []string{"orders"}})
	})
	assertion := func(jti string) string {
		now := clock.Now()
		tok, err := key.Sign(map[string]any{"iss": id, "sub": id, "aud": e.srv.URL + PathToken, "jti": jti,
			"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}, "JWT")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for n := range 10 {
		// Past the unknown-kid interval, so each attempt asks the JWKS host again.
		clock.Advance(jwks.DefaultUnknownKidInterval)
		res := e.do(t, req{contentType: formCT, body: assertionForm(assertion("down-" + itoa(int64(n))))})
		checkOAuthError(t, res, http.StatusUnauthorized, ErrInvalidClient)
	}
	if fetches.Load() == 0 {
		t.Fatal("the JWKS host was never asked")
	}
	loopback := netip.MustParseAddr("127.0.0.1")
	if _, ok := limiter.Allow(id, loopback); !ok {
		t.Error("the limiter counted a failure for the client whose keys were not loaded")
	}
	up.Store(true)
	clock.Advance(jwks.DefaultUnknownKidInterval)
	checkTokenResponse(t, e.do(t, req{contentType: formCT, body: assertionForm(assertion("up"))}))
}

// TestClientAssertionReplayFullNotCounted: a replay record full of live identifiers (possible
// only while Redis is failing, or without it at its size) refuses a correctly signed assertion
// without counting it as the client's failure, or our capacity would lock a legitimate client out
// with 429; once room is back the client is accepted.
func TestClientAssertionReplayFullNotCounted(t *testing.T) {
	key := mustKey(t, "ES256", "static-1")
	keys, _, err := jwks.NewStatic(publicJWKS(t, key))
	if err != nil {
		t.Fatal(err)
	}
	limiter := authlimit.New(authlimit.Options{ClientFailures: 1, IPFailures: 1})
	const id = "static-pkj"
	e := newEnv(t, func(c *Config, o *Options) {
		o.Limiter, o.Replay = limiter, replay.New(1)
		c.Clients = append(c.Clients, Client{ID: id, Keys: keys, Scopes: []string{"read"}, Audiences: []string{"orders"}})
	})
	assertion := func(jti string, life time.Duration) string {
		now := e.clock.Now()
		tok, err := key.Sign(map[string]any{"iss": id, "sub": id, "aud": e.srv.URL + PathToken, "jti": jti,
			"iat": now.Unix(), "exp": now.Add(life).Unix()}, "JWT")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	checkTokenResponse(t, e.do(t, req{contentType: formCT, body: assertionForm(assertion("first", time.Minute))}))
	for n := range 3 { // the record holds "first", live for a minute: no room
		res := e.do(t, req{contentType: formCT, body: assertionForm(assertion("full-"+itoa(int64(n)), time.Minute))})
		checkOAuthError(t, res, http.StatusUnauthorized, ErrInvalidClient)
	}
	if _, ok := limiter.Allow(id, netip.MustParseAddr("127.0.0.1")); !ok {
		t.Error("the limiter counted a failure for assertions refused because the replay record was full")
	}
	e.clock.Advance(2 * time.Minute)
	checkTokenResponse(t, e.do(t, req{contentType: formCT, body: assertionForm(assertion("later", time.Minute))}))
}
