package issuer

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/testkit"
)

// testKeyPEMs generates each test key once per test binary (RSA generation is slow).
var testKeyPEMs = sync.OnceValue(func() map[string][]byte {
	out := map[string][]byte{}
	for _, k := range []struct{ kid, alg string }{
		{"k1", "ES256"}, {"k2", "ES256"}, {"rsa", "RS256"}, {"ed", "EdDSA"}, {"ps", "PS256"}, {"es384", "ES384"},
	} {
		sk, err := jose.GenerateKey(k.alg, k.kid)
		if err != nil {
			panic(err)
		}
		pem, err := sk.MarshalPEM()
		if err != nil {
			panic(err)
		}
		out[k.kid] = pem
	}
	return out
})

func keyConfig(kid string) KeyConfig {
	alg := map[string]string{"k1": "ES256", "k2": "ES256", "rsa": "RS256", "ed": "EdDSA", "ps": "PS256", "es384": "ES384"}[kid]
	return KeyConfig{Kid: kid, Alg: alg, PEM: testKeyPEMs()[kid]}
}

// Test clients and their secrets.
const (
	svcID        = "svc"
	svcSecret    = "s3cret-value-0123456789abcdef"
	rotID        = "rot"
	rotOld       = "old-secret-0123456789abcdef"
	rotNew       = "new-secret-0123456789abcdef"
	specialID    = "a:b%+ü"
	specialSec   = "p@ss:w%rd+ü/= &x"
	perKeyID     = "perkey"
	perKeySecret = "perkey-secret-0123456789"
	bareID       = "bare"
	bareSecret   = "bare-secret-0123456789"
)

func testConfig(issuerURL string) Config {
	return Config{
		IssuerURL: issuerURL,
		TokenTTL:  time.Hour,
		Keys:      []KeyConfig{keyConfig("k1"), keyConfig("k2")},
		Clients: []Client{
			{
				ID: svcID, SecretHashes: [][32]byte{DigestSecret(svcSecret)},
				Scopes: []string{"read", "write", "admin"}, DefaultScopes: []string{"read"},
				Audiences: []string{"billing", "orders"}, TokenTTL: 5 * time.Minute,
				Claims: map[string]any{"tenant": "acme", "level": 42, "tags": []string{"a", "b"}},
			},
			{
				ID: rotID, SecretHashes: [][32]byte{DigestSecret(rotOld), DigestSecret(rotNew)},
				Scopes: []string{"read"}, DefaultScopes: []string{"read"}, Audiences: []string{"billing"},
				Introspect: true, // a resource server: may introspect every token
			},
			{
				ID: specialID, SecretHashes: [][32]byte{DigestSecret(specialSec)},
				Scopes: []string{"read"}, Audiences: []string{"billing"},
			},
			{
				ID: perKeyID, SecretHashes: [][32]byte{DigestSecret(perKeySecret)},
				Scopes: []string{"read"}, Audiences: []string{"orders"}, SigningKey: "k2",
			},
			{
				ID: bareID, SecretHashes: [][32]byte{DigestSecret(bareSecret)}, Audiences: []string{"bare-api"},
			},
		},
	}
}

// env is one issuer behind a real HTTP server on 127.0.0.1, whose IssuerURL is the server's URL.
type env struct {
	iss     *Issuer
	srv     *httptest.Server
	clock   *testkit.Clock
	logs    *testkit.LogBuffer
	metrics *metrics.Metrics
}

func newEnv(t testing.TB, mutate func(*Config, *Options)) *env {
	t.Helper()
	e := &env{clock: testkit.NewClock(time.Now().Truncate(time.Second)), logs: &testkit.LogBuffer{}, metrics: metrics.New()}
	var handler http.Handler = http.NotFoundHandler()
	var mu sync.RWMutex
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.RLock()
		h := handler
		mu.RUnlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)
	cfg := testConfig(e.srv.URL)
	opts := Options{
		Logger:  slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: e.metrics,
		Now:     e.clock.Now,
	}
	if mutate != nil {
		mutate(&cfg, &opts)
	}
	iss, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.iss = iss
	mu.Lock()
	handler = iss.Handler()
	mu.Unlock()
	return e
}

// response is one HTTP answer, read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// req describes one request to the test server.
type req struct {
	method      string
	path        string
	query       string
	contentType string
	body        string
	basic       *[2]string // raw user, password: form-urlencoded here as RFC 6749 §2.3.1 wants
	rawAuth     []string   // Authorization header values, verbatim
}

func basicAuth(id, secret string) *[2]string { return &[2]string{id, secret} }

func encodeBasic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

func (e *env) do(t testing.TB, q req) response {
	t.Helper()
	if q.method == "" {
		q.method = http.MethodPost
	}
	if q.path == "" {
		q.path = PathToken
	}
	u := e.srv.URL + q.path
	if q.query != "" {
		u += "?" + q.query
	}
	r, err := http.NewRequest(q.method, u, strings.NewReader(q.body))
	if err != nil {
		t.Fatal(err)
	}
	if q.contentType != "" {
		r.Header.Set("Content-Type", q.contentType)
	}
	if q.basic != nil {
		r.Header.Set("Authorization", encodeBasic(q.basic[0], q.basic[1]))
	}
	for _, a := range q.rawAuth {
		r.Header.Add("Authorization", a)
	}
	res, err := e.srv.Client().Do(r)
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

const formCT = "application/x-www-form-urlencoded"

func form(kv ...string) string {
	v := url.Values{}
	for k := 0; k+1 < len(kv); k += 2 {
		v.Add(kv[k], kv[k+1])
	}
	return v.Encode()
}

func jsonBody(t testing.TB, m map[string]any) string {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// getToken gets a token for a client with client_secret_basic and returns the parsed answer.
func (e *env) getToken(t testing.TB, id, secret string, extra ...string) tokenResponse {
	t.Helper()
	res := e.do(t, req{contentType: formCT, basic: basicAuth(id, secret),
		body: form(append([]string{"grant_type", "client_credentials"}, extra...)...)})
	if res.status != http.StatusOK {
		t.Fatalf("token for %q: status %d, body %s", id, res.status, res.body)
	}
	return checkTokenResponse(t, res)
}

// checkNoStore asserts the RFC 6749 §5.1 cache headers.
func checkNoStore(t testing.TB, res response) {
	t.Helper()
	if got := res.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	if got := res.header.Get("Pragma"); got != "no-cache" {
		t.Errorf("Pragma = %q, want no-cache", got)
	}
}

// checkTokenResponse asserts a §5.1 success answer and returns it.
func checkTokenResponse(t testing.TB, res response) tokenResponse {
	t.Helper()
	checkNoStore(t, res)
	if ct := res.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(res.body, &members); err != nil {
		t.Fatalf("success body is not a JSON object: %v: %s", err, res.body)
	}
	for name := range members {
		if !slices.Contains([]string{"access_token", "token_type", "expires_in", "scope"}, name) {
			t.Errorf("unexpected member %q in %s", name, res.body)
		}
	}
	var tr tokenResponse
	if err := json.Unmarshal(res.body, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.AccessToken == "" || tr.TokenType != "Bearer" || tr.ExpiresIn <= 0 {
		t.Errorf("bad token response %s", res.body)
	}
	return tr
}

// checkOAuthError asserts an RFC 6749 §5.2 error answer with the given status and code.
func checkOAuthError(t testing.TB, res response, status int, code string) {
	t.Helper()
	if res.status != status {
		t.Errorf("status = %d, want %d (body %s)", res.status, status, res.body)
	}
	if err := validErrorBody(res.body); err != "" {
		t.Errorf("%s: %s", err, res.body)
	}
	var e struct{ Error string }
	_ = json.Unmarshal(res.body, &e)
	if e.Error != code {
		t.Errorf("error = %q, want %q", e.Error, code)
	}
	checkNoStore(t, res)
	if ct := res.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	wantChallenge := ""
	if status == http.StatusUnauthorized {
		wantChallenge = `Basic realm="tokengate"`
	}
	if got := res.header.Get("WWW-Authenticate"); got != wantChallenge {
		t.Errorf("WWW-Authenticate = %q, want %q", got, wantChallenge)
	}
}

// validErrorBody checks the §5.2 shape: exactly error and error_description, a known code and
// a description in the §5.2 character set. It returns "" when valid.
func validErrorBody(body []byte) string {
	var members map[string]any
	if err := json.Unmarshal(body, &members); err != nil {
		return "error body is not a JSON object"
	}
	if len(members) != 2 {
		return "error body must have exactly error and error_description"
	}
	code, ok1 := members["error"].(string)
	desc, ok2 := members["error_description"].(string)
	if !ok1 || !ok2 {
		return "error or error_description is not a string"
	}
	if !slices.Contains(ErrorCodes, code) {
		return "unknown error code " + code
	}
	for _, r := range desc {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return "error_description outside the RFC 6749 §5.2 character set"
		}
	}
	return ""
}

// verifyWithServedJWKS fetches the JWKS the way a resource server would and verifies token.
func (e *env) verifyWithServedJWKS(t testing.TB, token string) (*jose.Unverified, *jose.Claims) {
	t.Helper()
	res := e.do(t, req{method: http.MethodGet, path: PathJWKS})
	if res.status != http.StatusOK {
		t.Fatalf("jwks: %d", res.status)
	}
	ks, dropped, err := jose.ParseKeySet(res.body)
	if err != nil || len(dropped) > 0 {
		t.Fatalf("served JWKS: %v %v", err, dropped)
	}
	u, err := jose.Parse(token, 0)
	if err != nil {
		t.Fatalf("parse token: %v", err)
	}
	c, err := u.Verify(ks, jose.VerificationAlgorithms())
	if err != nil {
		t.Fatalf("verify token: %v", err)
	}
	return u, c
}
