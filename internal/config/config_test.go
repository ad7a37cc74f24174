package config

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tokengate/tokengate/internal/testkit"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*.golden from the current output")

// Test values. None is a real secret.
const (
	testClientSecret  = "test-only-client-secret"
	testPartnerSecret = "test-only-partner-secret-NOT-REAL"
	testRedisPassword = "test-only-redis-password-NOT-REAL"
	// leakMarker appears in every secret value of the bad files; no message may contain it.
	leakMarker = "LEAKME"
)

// envMap returns an env lookup over m.
func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// testEnv is the environment of the golden files.
func testEnv(t testing.TB) func(string) (string, bool) {
	return envMap(map[string]string{
		"PARTNER_ID":            "partner-client",
		"CLIENT_SECRET":         testClientSecret + "-" + leakMarker,
		"NOT_A_BOOL":            "maybe",
		"TEST_SIGNING_KEY_FILE": writeTestKey(t),
		"TEST_CA_FILE":          writeTestCA(t),
	})
}

// writeTestCA writes a freshly generated CA certificate to a temporary file.
func writeTestCA(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "test-ca.pem")
	if err := os.WriteFile(p, testkit.NewCA(t, "tokengate config test CA").PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeTestKey writes a freshly generated P-256 key (PKCS#8 PEM) to a temporary file.
func writeTestKey(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "test-key.pem")
	testkit.WriteP256Key(t, p)
	return p
}

func asErrors(t *testing.T, err error) *Errors {
	t.Helper()
	var e *Errors
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not *Errors", err, err)
	}
	return e
}

// TestBadFiles loads every testdata/bad/NAME.yaml and compares the complete problem list with
// testdata/bad/NAME.golden. It also checks that no message contains a secret.
func TestBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 25 {
		t.Fatalf("only %d bad files", len(files))
	}
	env := testEnv(t)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			cfg, err := Load(f, env)
			if err == nil {
				t.Fatalf("loaded without error: %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("config returned with an error")
			}
			got := asErrors(t, err).Error() + "\n"
			for _, secret := range []string{leakMarker, testClientSecret, testPartnerSecret, testRedisPassword} {
				if strings.Contains(got, secret) {
					t.Errorf("a message contains the secret %q:\n%s", secret, got)
				}
			}
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("problems differ from %s\n--- got:\n%s--- want:\n%s", golden, got, want)
			}
		})
	}
}

// TestGoodFiles loads every testdata/good file without a problem.
func TestGoodFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/good/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("only %d good files", len(files))
	}
	env := testEnv(t)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := Load(f, env)
			if err != nil {
				t.Fatalf("unexpected problems:\n%v", err)
			}
			if cfg == nil {
				t.Fatal("nil config")
			}
		})
	}
}

// TestSpecExample checks the decoded docs/configuration.md example field by field, including the
// resolved secrets.
func TestSpecExample(t *testing.T) {
	keyFile := writeTestKey(t)
	env := envMap(map[string]string{"PARTNER_ID": "partner-client", "TEST_SIGNING_KEY_FILE": keyFile})
	cfg, err := Load("testdata/good/spec.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	wantKey := make([]byte, 32)
	for i := range wantKey {
		wantKey[i] = byte(i)
	}

	want := &Config{
		Server: Server{GRPCAddr: ":9001", HTTPAddr: ":8080", MaxTokenBytes: 8192, ForwardAuthHeaders: "auto"},
		Issuer: &Issuer{
			IssuerURL:   "https://tokengate.example.com",
			TokenTTL:    Duration(time.Hour),
			SigningKeys: []SigningKey{{Kid: "2026-11", Alg: "ES256", File: keyFile, KeyData: keyPEM}},
			Clients: []Client{{
				ClientID:         "my-id",
				ClientSecretHash: "sha256:4a2ce607f28d5028d33877ee496bbc31abb14756720cf53c87e864f16249606b",
				Scopes:           []string{"read", "write"},
				DefaultScopes:    []string{"read"},
				Audiences:        []string{"billing"},
				TokenTTL:         Duration(5 * time.Minute),
				SigningKey:       "2026-11",
				Claims:           map[string]any{"tenant": "acme"},
				SecretHashes:     [][32]byte{sha256.Sum256([]byte(testClientSecret))},
			}},
		},
		Providers: []Provider{
			{
				Name:             "corp",
				Issuer:           "https://idp.example.com/",
				JWKSURI:          "https://idp.example.com/.well-known/jwks.json",
				Audiences:        []string{"api://gateway"},
				Algorithms:       []string{"RS256", "ES256"},
				ClockSkew:        Duration(30 * time.Second),
				RefreshInterval:  Duration(15 * time.Minute),
				MaxTokenLifetime: Duration(24 * time.Hour),
			},
			{
				Name:             "self",
				Issuer:           "self",
				Algorithms:       []string{"ES256"}, // the issuer's signing key algorithms
				ClockSkew:        Duration(30 * time.Second),
				RefreshInterval:  Duration(15 * time.Minute),
				MaxTokenLifetime: Duration(24 * time.Hour),
			},
		},
		Routes: []Route{
			{
				Name:  "billing",
				Match: Match{Authority: "billing.example.com", PathPrefix: "/api/", Methods: []string{"GET", "POST"}},
				Authenticate: Authenticate{JWT: &JWTAuth{
					Providers: []string{"corp", "self"},
					Scopes:    []string{"billing.read"},
					Claims:    map[string]any{"tenant": "acme"},
				}},
				Upstream:      Upstream{Mint: &Mint{Audience: "billing-api", Scopes: []string{"billing.read"}, TTL: Duration(5 * time.Minute)}},
				ForwardClaims: map[string]string{"x-subject": "sub", "x-scopes": "scope"},
			},
			{
				Name:         "partner",
				Match:        Match{Authority: "partner.example.com"},
				Authenticate: Authenticate{JWT: &JWTAuth{Providers: []string{"corp"}}},
				Upstream: Upstream{Fetch: &Fetch{
					TokenURL:     "https://idp.partner.com/oauth/token",
					ClientID:     "partner-client",
					ClientSecret: Secret{File: "../secrets/TEST-ONLY-partner-secret.txt", value: testPartnerSecret},
					Exchange: Exchange{
						Scopes:         []string{"orders.read"},
						Audience:       "https://api.partner.com",
						EndpointParams: map[string][]string{"resource": {"x"}},
						AuthStyle:      "basic",
						Timeout:        Duration(2 * time.Second),
						DefaultTTL:     Duration(5 * time.Minute),
					},
				}},
			},
			{
				Name:  "legacy",
				Match: Match{PathPrefix: "/legacy/"},
				Authenticate: Authenticate{ClientCredentials: &ClientCredentialsAuth{
					TokenURL: "https://idp.example.com/oauth/token",
					Exchange: Exchange{
						Scopes:     []string{"legacy"},
						AuthStyle:  "basic",
						Timeout:    Duration(2 * time.Second),
						DefaultTTL: Duration(5 * time.Minute),
					},
				}},
				Upstream: Upstream{Exchanged: &Empty{}},
			},
			{
				Name:         "public",
				Match:        Match{PathPrefix: "/public/"},
				Authenticate: Authenticate{None: &Empty{}},
				Upstream:     Upstream{Remove: &Empty{}},
			},
		},
		Cache: Cache{
			VerifiedTokens: 100000,
			UpstreamTokens: 100000,
			Redis: &Redis{
				Addr:              "127.0.0.1:6379",
				Password:          Secret{File: "../secrets/TEST-ONLY-redis-password.txt", value: testRedisPassword},
				KeyPrefix:         "tokengate:",
				EncryptionKeyFile: "../secrets/TEST-ONLY-cache-key.hex",
				EncryptionKey:     wantKey,
			},
		},
	}
	if !reflect.DeepEqual(cfg, want) {
		g, _ := json.MarshalIndent(cfg, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("config differs\n--- got:\n%s\n--- want:\n%s", g, w)
		for i := range want.Routes {
			if !reflect.DeepEqual(cfg.Routes[i], want.Routes[i]) {
				t.Errorf("routes[%d]: got %+v", i, cfg.Routes[i])
			}
		}
	}
	if got := cfg.Routes[0].Upstream.Mode(); got != UpstreamMint {
		t.Errorf("mode = %q", got)
	}
}

// TestDefaults checks every default on a minimal file.
func TestDefaults(t *testing.T) {
	const doc = `
issuer:
  issuer_url: https://tg.example.com
  signing_keys: [{kid: a, alg: EdDSA, generate: true}, {kid: b, alg: RS256, generate: true}, {kid: c, alg: EdDSA, generate: true}]
  clients: [{client_id: c, client_secret: s, audiences: [x]}]
providers:
  - {name: corp, issuer: https://idp.example.com, jwks_uri: https://idp.example.com/jwks, audiences: [a]}
  - {name: self, issuer: self}
routes:
  - name: m
    authenticate: {jwt: {providers: [corp]}}
    upstream: {mint: {audience: upstream-x}}
  - name: f
    authenticate: {client_credentials: {token_url: https://idp.example.com/t}}
    upstream: {fetch: {token_url: https://idp.example.com/t, client_id: a, client_secret: b}}
cache:
  redis: {addr: "localhost:6379"}
`
	cfg, err := Parse([]byte(doc), "", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"server.grpc_addr", cfg.Server.GRPCAddr, ":9001"},
		{"server.http_addr", cfg.Server.HTTPAddr, ":8080"},
		{"server.max_token_bytes", cfg.Server.MaxTokenBytes, 8192},
		{"server.allow_http_urls", cfg.Server.AllowHTTPURLs, false},
		{"issuer.token_ttl", cfg.Issuer.TokenTTL.Std(), time.Hour},
		{"issuer.clients[0].token_ttl", cfg.Issuer.Clients[0].TokenTTL.Std(), time.Hour},
		{"providers[0].algorithms", cfg.Providers[0].Algorithms, []string{"RS256", "ES256", "PS256", "EdDSA"}},
		{"providers[0].clock_skew", cfg.Providers[0].ClockSkew.Std(), 30 * time.Second},
		{"providers[0].refresh_interval", cfg.Providers[0].RefreshInterval.Std(), 15 * time.Minute},
		{"providers[0].max_token_lifetime", cfg.Providers[0].MaxTokenLifetime.Std(), 24 * time.Hour},
		{"providers[1].algorithms (self)", cfg.Providers[1].Algorithms, []string{"EdDSA", "RS256"}},
		{"routes[0].upstream.mint.ttl", cfg.Routes[0].Upstream.Mint.TTL.Std(), 5 * time.Minute},
		{"client_credentials.auth_style", cfg.Routes[1].Authenticate.ClientCredentials.AuthStyle, "basic"},
		{"client_credentials.timeout", cfg.Routes[1].Authenticate.ClientCredentials.Timeout.Std(), 2 * time.Second},
		{"client_credentials.default_ttl", cfg.Routes[1].Authenticate.ClientCredentials.DefaultTTL.Std(), 5 * time.Minute},
		{"fetch.auth_style", cfg.Routes[1].Upstream.Fetch.AuthStyle, "basic"},
		{"fetch.timeout", cfg.Routes[1].Upstream.Fetch.Timeout.Std(), 2 * time.Second},
		{"fetch.default_ttl", cfg.Routes[1].Upstream.Fetch.DefaultTTL.Std(), 5 * time.Minute},
		{"cache.verified_tokens", cfg.Cache.VerifiedTokens, 100000},
		{"cache.upstream_tokens", cfg.Cache.UpstreamTokens, 100000},
		{"cache.redis.key_prefix", cfg.Cache.Redis.KeyPrefix, "tokengate:"},
		{"cache.redis.db", cfg.Cache.Redis.DB, 0},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestExplicitValuesWin checks that a value written in the file is kept, even where it equals
// the zero value (clock_skew: 0s, key_prefix: "").
func TestExplicitValuesWin(t *testing.T) {
	const doc = `
server: {grpc_addr: "127.0.0.1:9", http_addr: "127.0.0.1:8", max_token_bytes: 4096}
providers:
  - {name: corp, issuer: https://idp.example.com, jwks_uri: https://idp.example.com/jwks, audiences: [a],
     clock_skew: 0s, refresh_interval: 1m, max_token_lifetime: 1h, algorithms: [ES384]}
routes:
  - {name: r, authenticate: {jwt: {providers: [corp]}}, upstream: {passthrough: {}}}
cache: {verified_tokens: 10, upstream_tokens: 20, redis: {addr: "r:1", key_prefix: ""}}
`
	cfg, err := Parse([]byte(doc), "", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Providers[0]
	if p.ClockSkew != 0 || p.RefreshInterval.Std() != time.Minute || p.MaxTokenLifetime.Std() != time.Hour ||
		!reflect.DeepEqual(p.Algorithms, []string{"ES384"}) {
		t.Errorf("provider = %+v", p)
	}
	if cfg.Server.GRPCAddr != "127.0.0.1:9" || cfg.Server.MaxTokenBytes != 4096 {
		t.Errorf("server = %+v", cfg.Server)
	}
	if cfg.Cache.VerifiedTokens != 10 || cfg.Cache.UpstreamTokens != 20 || cfg.Cache.Redis.KeyPrefix != "" {
		t.Errorf("cache = %+v", cfg.Cache)
	}
}

// minimalRoute is appended to snippets that need a valid route to be a whole configuration.
const minimalRoute = "\nroutes: [{name: r, authenticate: {none: {}}, upstream: {remove: {}}}]\n"

// TestEnvExpansion covers ${NAME} in string values and where it is refused.
func TestEnvExpansion(t *testing.T) {
	env := envMap(map[string]string{
		"A":      "alpha",
		"EMPTY":  "",
		"YAML":   "x\n- injected: true\n}{",
		"NESTED": "${A}",
		"DB":     "7",
		"YES":    "true",
		"BADUTF": "\xff",
	})
	tests := []struct {
		name    string
		value   string // the YAML value of cache.redis.key_prefix
		want    string
		problem string
	}{
		{"whole", `"${A}"`, "alpha", ""},
		{"inside", `"x-${A}-${A}:"`, "x-alpha-alpha:", ""},
		{"empty value", `"${EMPTY}"`, "", ""},
		{"dollar without brace is literal", `"$A and $"`, "$A and $", ""},
		{"escaped", `"$${A}"`, "${A}", ""},
		{"value is text, not YAML", `"${YAML}"`, "x\n- injected: true\n}{", ""},
		{"value is not expanded again", `"${NESTED}"`, "${A}", ""},
		{"unset", `"${NOPE}"`, "", "line 1: cache.redis.key_prefix: environment variable NOPE is not set"},
		{"two unset", `"${NOPE}${NOPE2}"`, "", "line 1: cache.redis.key_prefix: environment variable NOPE is not set\nline 1: cache.redis.key_prefix: environment variable NOPE2 is not set"},
		{"unterminated", `"${A"`, "", "line 1: cache.redis.key_prefix: unterminated ${ (write $${ for a literal ${)"},
		{"bad name", `"${A-B}"`, "", `line 1: cache.redis.key_prefix: invalid ${...} reference: a name is letters, digits and _ (write $${ for a literal ${)`},
		{"invalid UTF-8", `"${BADUTF}"`, "", "line 1: cache.redis.key_prefix: environment variable BADUTF is not valid UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := "cache: {redis: {addr: \"r:1\", key_prefix: " + tc.value + "}}" + minimalRoute
			cfg, err := Parse([]byte(doc), "", env)
			if tc.problem != "" {
				if err == nil {
					t.Fatalf("no error, key_prefix %q", cfg.Cache.Redis.KeyPrefix)
				}
				if got := asErrors(t, err).Error(); got != tc.problem {
					t.Fatalf("problems:\n%s\nwant:\n%s", got, tc.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Cache.Redis.KeyPrefix; got != tc.want {
				t.Fatalf("key_prefix = %q, want %q", got, tc.want)
			}
		})
	}

	t.Run("typed values from env", func(t *testing.T) {
		doc := "server: {allow_http_urls: \"${YES}\"}\ncache: {redis: {addr: \"r:1\", db: \"${DB}\"}}" + minimalRoute
		cfg, err := Parse([]byte(doc), "", env)
		if err != nil {
			t.Fatal(err)
		}
		if !cfg.Server.AllowHTTPURLs || cfg.Cache.Redis.DB != 7 {
			t.Fatalf("allow_http_urls=%v db=%d", cfg.Server.AllowHTTPURLs, cfg.Cache.Redis.DB)
		}
	})
	t.Run("keys are not expanded", func(t *testing.T) {
		doc := "routes: [{name: r, authenticate: {none: {}}, upstream: {remove: {}}, forward_claims: {\"x-${A}\": sub}}]"
		_, err := Parse([]byte(doc), "", env)
		if err == nil || !strings.Contains(err.Error(), `routes[0].forward_claims["x-${A}"]: not a valid header name`) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("claims are expanded", func(t *testing.T) {
		doc := `providers: [{name: p, issuer: "https://i.example.com", jwks_uri: "https://i.example.com/k", audiences: [a]}]
routes: [{name: r, authenticate: {jwt: {providers: [p], claims: {tenant: "${A}", n: [1, 2.5, true, ~]}}}, upstream: {passthrough: {}}}]`
		cfg, err := Parse([]byte(doc), "", env)
		if err != nil {
			t.Fatal(err)
		}
		want := Claims{"tenant": "alpha", "n": []any{json.Number("1"), json.Number("2.5"), true, nil}}
		if got := cfg.Routes[0].Authenticate.JWT.Claims; !reflect.DeepEqual(got, want) {
			t.Fatalf("claims = %#v", got)
		}
	})
	t.Run("nil env uses the process environment", func(t *testing.T) {
		t.Setenv("TOKENGATE_CONFIG_TEST_PREFIX", "from-os:")
		doc := "cache: {redis: {addr: \"r:1\", key_prefix: \"${TOKENGATE_CONFIG_TEST_PREFIX}\"}}" + minimalRoute
		cfg, err := Parse([]byte(doc), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Cache.Redis.KeyPrefix != "from-os:" {
			t.Fatalf("key_prefix = %q", cfg.Cache.Redis.KeyPrefix)
		}
	})
}

// TestScalarText checks that string fields keep the text numbers and dates were written with.
func TestScalarText(t *testing.T) {
	doc := `issuer:
  issuer_url: https://tg.example.com
  signing_keys: [{kid: 2026-11-01, alg: ES256, generate: true}, {kid: 0123, alg: ES256, generate: true}, {kid: 1.10, alg: ES256, generate: true}]
  clients: [{client_id: 00042, client_secret: yes, audiences: [true]}]
`
	cfg, err := Parse([]byte(doc), "", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range cfg.Issuer.SigningKeys {
		kids = append(kids, k.Kid)
	}
	if !reflect.DeepEqual(kids, []string{"2026-11-01", "0123", "1.10"}) {
		t.Errorf("kids = %q", kids)
	}
	c := cfg.Issuer.Clients[0]
	if c.ClientID != "00042" || c.ClientSecret.Inline != "yes" || !reflect.DeepEqual(c.Audiences, []string{"true"}) {
		t.Errorf("client = %+v", c)
	}
}

// TestSecretFiles covers *_file resolution: relative and absolute paths, newline stripping and
// files that must be refused without blocking.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("plain", "s3cret")
	write("newline", "s3cret\n")
	write("crlf", "s3cret\r\n")
	write("two-newlines", "s3cret\n\n")
	write("empty", "")
	write("only-newline", "\n")
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		file    string
		want    string
		problem string
	}{
		{"plain", "s3cret", ""},
		{"newline", "s3cret", ""},
		{"crlf", "s3cret", ""},
		{"two-newlines", "s3cret\n", ""},
		{filepath.Join(dir, "newline"), "s3cret", ""}, // absolute
		{"empty", "", "file is empty"},
		{"only-newline", "", "file is empty"},
		{"missing", "", `cannot read "` + filepath.Join(dir, "missing") + `": no such file or directory`},
		{".", "", `"` + dir + `" is a directory`},
		{"fifo", "", `"` + filepath.Join(dir, "fifo") + `" is not a regular file`},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			doc := `routes:
  - name: r
    authenticate: {none: {}}
    upstream: {fetch: {token_url: "https://idp.example.com/t", client_id: a, client_secret_file: "` + tc.file + `"}}
`
			cfg, err := Parse([]byte(doc), dir, envMap(nil))
			if tc.problem != "" {
				want := "line 4: routes[0].upstream.fetch.client_secret_file: " + tc.problem
				if err == nil || err.Error() != want {
					t.Fatalf("err = %v, want %s", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Routes[0].Upstream.Fetch.ClientSecret.Value(); got != tc.want {
				t.Fatalf("secret = %q, want %q", got, tc.want)
			}
		})
	}

	t.Run("client secret sources are hashed", func(t *testing.T) {
		h2 := sha256.Sum256([]byte("second"))
		doc := `issuer:
  issuer_url: https://tg.example.com
  signing_keys: [{kid: a, alg: ES256, generate: true}]
  clients:
    - {client_id: file, client_secret_file: newline, audiences: [x]}
    - {client_id: inline, client_secret: s3cret, audiences: [x]}
    - {client_id: rotation, client_secret_hashes: ["sha256:` + hexOf(sha256.Sum256([]byte("s3cret"))) + `", "SHA256:` + strings.ToUpper(hexOf(h2)) + `"], audiences: [x]}
`
		_, err := Parse([]byte(doc), dir, envMap(nil))
		if err == nil || !strings.Contains(err.Error(), "client_secret_hashes[1]: must be sha256: followed by 64 hex digits") {
			t.Fatalf("upper-case prefix accepted? err = %v", err)
		}
		doc = strings.Replace(doc, "SHA256:", "sha256:", 1)
		cfg, err := Parse([]byte(doc), dir, envMap(nil))
		if err != nil {
			t.Fatal(err)
		}
		want := sha256.Sum256([]byte("s3cret"))
		cs := cfg.Issuer.Clients
		if !reflect.DeepEqual(cs[0].SecretHashes, [][32]byte{want}) ||
			!reflect.DeepEqual(cs[1].SecretHashes, [][32]byte{want}) ||
			!reflect.DeepEqual(cs[2].SecretHashes, [][32]byte{want, h2}) {
			t.Fatalf("hashes = %x / %x / %x", cs[0].SecretHashes, cs[1].SecretHashes, cs[2].SecretHashes)
		}
	})
}

func hexOf(b [32]byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 64)
	for i, c := range b {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(out)
}

// TestEncryptionKey covers the accepted encodings of the Redis encryption key.
func TestEncryptionKey(t *testing.T) {
	raw := []byte("0123456789abcdef0123456789ABCDEF") // 32 bytes, a test value
	tests := []struct {
		name    string
		content string
		ok      bool
	}{
		{"raw", string(raw), true},
		{"raw ending in a newline byte", string(raw[:31]) + "\n", true},
		{"hex", "30313233343536373839616263646566303132333435363738394142434445460a"[:64], true},
		{"hex newline", "3031323334353637383961626364656630313233343536373839414243444546\n", true},
		{"base64", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlBQkNERUY=\n", true},
		{"base64 raw url", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlBQkNERUY", true},
		{"31 bytes", string(raw[:31]), false},
		{"33 bytes", string(raw) + "x", false},
		{"hex of 16 bytes", "30313233343536373839616263646566\n", false},
		{"base64 of 31 bytes", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlBQkNERQ==", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "key"), []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			doc := "cache: {redis: {addr: \"r:1\", encryption_key_file: key}}" + minimalRoute
			cfg, err := Parse([]byte(doc), dir, envMap(nil))
			if !tc.ok {
				want := "line 1: cache.redis.encryption_key_file: must hold a 32-byte key: 32 raw bytes, 64 hex digits or base64 of 32 bytes"
				if err == nil || err.Error() != want {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.Cache.Redis.EncryptionKey
			if tc.name == "raw ending in a newline byte" {
				if len(got) != 32 || got[31] != '\n' {
					t.Fatalf("key = %q", got)
				}
				return
			}
			if string(got) != string(raw) {
				t.Fatalf("key = %q", got)
			}
		})
	}
}

// TestNormalization checks the values Load rewrites: methods upper-cased, authority and
// forward_claims header names lower-cased.
func TestNormalization(t *testing.T) {
	doc := `routes:
  - name: r
    match: {authority: "*.Example.COM", methods: [get, Post]}
    authenticate: {none: {}}
    upstream: {remove: {}}
    forward_claims: {X-Subject: sub}
`
	cfg, err := Parse([]byte(doc), "", envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Route("r")
	if r == nil {
		t.Fatal("Route(r) = nil")
	}
	if r.Match.Authority != "*.example.com" || !reflect.DeepEqual(r.Match.Methods, []string{"GET", "POST"}) ||
		!reflect.DeepEqual(r.ForwardClaims, map[string]string{"x-subject": "sub"}) {
		t.Fatalf("route = %+v", r)
	}
}

// TestMergeKeys checks that YAML anchors, aliases and merge keys give the values YAML defines:
// explicit keys win over merged ones, earlier merge sources over later ones.
func TestMergeKeys(t *testing.T) {
	cfg, err := Load("testdata/good/merge.yaml", testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Route("a").Upstream.Fetch
	b := cfg.Route("b").Upstream.Fetch
	if a == nil || b == nil {
		t.Fatalf("fetch missing: %+v %+v", a, b)
	}
	if a.TokenURL != "https://idp.example.com/token" || a.ClientID != "gateway" || a.Timeout.Std() != 2*time.Second ||
		!reflect.DeepEqual(a.Scopes, []string{"a"}) {
		t.Errorf("a = %+v", a)
	}
	if b.TokenURL != "https://idp.example.com/token" || b.ClientID != "gateway" || b.Timeout.Std() != 5*time.Second ||
		!reflect.DeepEqual(b.Scopes, []string{"b"}) || b.AuthStyle != "body" {
		t.Errorf("b = %+v", b)
	}
	if got := cfg.Route("c").Upstream.Fetch.AuthStyle; got != "body" {
		t.Errorf("c.auth_style = %q, want the first merge source's", got)
	}
}

// TestProblemOrder checks that problems come in document order whatever order the checks ran
// in: a problem about a key written in the file sorts at that key (before its children), one
// about a missing key right after its parent's text.
func TestProblemOrder(t *testing.T) {
	doc := `cache:
  verified_tokens: -1
routes:
  - name: a
    authenticate: {none: {}}
    upstream:
      fetch:
        client_id: x
        auth_style: bogus
  - name: b
    upstream: {remove: {}}
    authenticate: {none: {}, jwt: {}}
server:
  max_token_bytes: 1
`
	_, err := Parse([]byte(doc), "", envMap(nil))
	want := `line 2: cache.verified_tokens: must be between 1 and 10000000
line 7: routes[0].upstream.fetch: exactly one of client_secret, client_secret_file, private_key, client_assertion_file, tls
line 9: routes[0].upstream.fetch.auth_style: must be basic or body
line 7: routes[0].upstream.fetch.token_url: is required
line 12: routes[1].authenticate: exactly one of jwt, client_credentials, none
line 12: routes[1].authenticate.jwt.providers: at least one provider is required
line 14: server.max_token_bytes: must be between 1024 and 65536`
	if err == nil || err.Error() != want {
		t.Fatalf("got:\n%v\nwant:\n%s", err, want)
	}
}

// TestLoadReadError checks that an unreadable configuration file is an ordinary error, not a
// list of problems.
func TestLoadReadError(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), envMap(nil))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
	var e *Errors
	if errors.As(err, &e) {
		t.Fatalf("read error reported as *Errors")
	}
}

// TestHelpers covers the small accessors.
func TestHelpers(t *testing.T) {
	cfg, err := Load("testdata/good/spec.yaml", testEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		route, auth, upstream string
	}{
		{"billing", AuthJWT, UpstreamMint},
		{"partner", AuthJWT, UpstreamFetch},
		{"legacy", AuthClientCredentials, UpstreamExchanged},
		{"public", AuthNone, UpstreamRemove},
	}
	for _, tc := range tests {
		r := cfg.Route(tc.route)
		if r == nil {
			t.Fatalf("Route(%q) = nil", tc.route)
		}
		if r.Authenticate.Mode() != tc.auth || r.Upstream.Mode() != tc.upstream {
			t.Errorf("%s: modes %q %q", tc.route, r.Authenticate.Mode(), r.Upstream.Mode())
		}
	}
	if cfg.Route("nope") != nil || cfg.Provider("nope") != nil {
		t.Error("unknown names found")
	}
	if !cfg.Provider("self").IsSelf() || cfg.Provider("corp").IsSelf() {
		t.Error("IsSelf")
	}
	var nilCfg *Config
	if nilCfg.Route("x") != nil || (*Provider)(nil).IsSelf() || (&Upstream{}).Mode() != "" || (&Authenticate{}).Mode() != "" {
		t.Error("zero values")
	}
	var d Duration
	if err := yaml.Unmarshal([]byte("1m30s"), &d); err != nil || d != Duration(90*time.Second) || d.String() != "1m30s" {
		t.Errorf("unmarshal = %v %v", d, err)
	}
	for _, bad := range []string{`"-1s"`, `90`, `"soon"`, `[1s]`} {
		if err := yaml.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("Duration accepted %s", bad)
		}
	}
	if s := fmt.Sprint(Secret{Inline: "s3cret", value: "s3cret"}); s != "[secret]" {
		t.Errorf("a Secret prints as %q", s)
	}
}

// TestPaths checks path building and the nearest-ancestor lookup, which the ordering relies on.
func TestPaths(t *testing.T) {
	paths := map[string]bool{"routes": true, "routes[2].upstream.fetch": true, "routes[0].forward_claims": true,
		"a.claims": true, `a["b.c"]`: true}
	tests := []struct{ path, parent string }{
		{"routes", ""},
		{"routes[2]", "routes"},
		{"routes[2].upstream.fetch.token_url", "routes[2].upstream.fetch"},
		{keyPath("routes[0].forward_claims", "x-sub"), "routes[0].forward_claims"},
		{keyPath("a.claims", "https://x.example/c"), "a.claims"},
		{keyPath("a.claims", `we"ird].[x`), "a.claims"},
		{keyPath(keyPath("a", "b.c"), "d"), `a["b.c"]`},
		{indexPath(keyPath("a", "b.c"), 3), `a["b.c"]`},
	}
	for _, tc := range tests {
		if got, _ := nearest(tc.path, func(a string) bool { return paths[a] }); got != tc.parent {
			t.Errorf("nearest(%q) = %q, want %q", tc.path, got, tc.parent)
		}
	}
}

// TestAliasBomb checks that exponential alias expansion is refused quickly.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}
	b.WriteString("providers: [{name: p, issuer: https://i.example.com, jwks_uri: https://i.example.com/k, audiences: [a]}]\n")
	b.WriteString("routes: [{name: r, authenticate: {jwt: {providers: [p], claims: {x: *a9}}}, upstream: {passthrough: {}}}]\n")
	start := time.Now()
	_, err := Parse([]byte(b.String()), "", envMap(nil))
	if err == nil || !strings.Contains(err.Error(), "configuration is too large") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
}
