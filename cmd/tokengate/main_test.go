package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/testenv"
)

func runCmd(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), exitCode(err)
}

func TestCommands(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("routes:\n  - name: public\n    authenticate: {none: {}}\n    upstream: {remove: {}}\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("server: {max_token_bytes: 1}\nroutes:\n  - name: a\n    authenticate: {none: {}}\n    upstream: {remove: {}, passthrough: {}}\n    bogus: 1\n"), 0o600)

	// A route after a catch-all is never chosen by match: a warning, exit 0 (issue 9, item 12).
	shadowed := filepath.Join(dir, "shadowed.yaml")
	os.WriteFile(shadowed, []byte("routes:\n  - {name: all, authenticate: {none: {}}, upstream: {remove: {}}}\n"+
		"  - {name: admin, match: {path_prefix: /admin/}, authenticate: {none: {}}, upstream: {remove: {}}}\n"), 0o600)

	badKey := filepath.Join(dir, "badkey.yaml")
	os.WriteFile(filepath.Join(dir, "TEST-ONLY-broken.pem"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	os.WriteFile(badKey, []byte("issuer:\n  issuer_url: https://x.example\n  signing_keys: [{kid: a, alg: ES256, file: TEST-ONLY-broken.pem}]\n"+
		"  clients: [{client_id: c, client_secret: s, audiences: [x]}]\nroutes: [{name: p, authenticate: {none: {}}, upstream: {remove: {}}}]\n"), 0o600)

	cases := []struct {
		name     string
		args     []string
		stdin    string
		code     int
		inStdout []string
		inStderr []string
	}{
		{"version", []string{"version"}, "", 0, []string{"tokengate "}, nil},
		{"serve --help", []string{"serve", "--help"}, "", 0, nil, []string{"--grpc-addr"}},
		{"keygen --help", []string{"keygen", "--help"}, "", 0, nil, []string{"--if-missing"}},
		{"no command", nil, "", 2, nil, []string{"usage:"}},
		{"unknown command", []string{"frobnicate"}, "", 2, nil, []string{"usage:"}},
		{"validate good", []string{"validate", "--config", good}, "", 0, []string{"valid"}, nil},
		{"validate warns about a shadowed route", []string{"validate", "--config", shadowed}, "", 0,
			[]string{`warning: routes[1].match: never chosen by match: routes[0] ("all")`, "valid"}, nil},
		{"validate bad lists every problem", []string{"validate", "--config", bad}, "", 2,
			[]string{"server.max_token_bytes:", "routes[0].upstream: exactly one of mint, fetch, exchanged, token_exchange, passthrough, remove", "routes[0].bogus: unknown field"}, nil},
		{"validate parses signing keys", []string{"validate", "--config", badKey}, "", 2, []string{"signing_keys[0]"}, nil},
		{"validate missing file", []string{"validate", "--config", filepath.Join(dir, "nope.yaml")}, "", 2, nil, nil},
		{"validate without --config", []string{"validate"}, "", 2, nil, nil},
		{"serve bad flag", []string{"serve", "--no-such-flag"}, "", 2, nil, nil},
		{"serve bad config", []string{"serve", "--config", bad}, "", 2, nil, []string{"routes[0].bogus: unknown field"}},
		{"keygen bad alg", []string{"keygen", "--alg", "HS256"}, "", 2, nil, nil},
		{"hash-secret", []string{"hash-secret"}, "s3cret\n", 0, []string{"sha256:" + sha256hex("s3cret")}, nil},
		{"hash-secret empty", []string{"hash-secret"}, "\n", 2, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runCmd(t, tc.stdin, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			for _, s := range tc.inStdout {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tc.inStderr {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut)
				}
			}
		})
	}
}

func sha256hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestKeygen(t *testing.T) {
	for _, alg := range []string{"ES256", "ES384", "RS256", "PS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "k.pem")
			if _, e, code := runCmd(t, "", "keygen", "--alg", alg, "--kid", "k1", "--out", out); code != 0 {
				t.Fatalf("exit %d: %s", code, e)
			}
			st, err := os.Stat(out)
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("key file mode %v, err %v", st.Mode(), err)
			}
			data, _ := os.ReadFile(out)
			if !bytes.HasPrefix(data, []byte("-----BEGIN PRIVATE KEY-----")) {
				t.Fatalf("not PKCS#8 PEM: %.40s", data)
			}
			if _, err := jose.LoadSigningKey(data, alg, "k1"); err != nil {
				t.Fatalf("written key does not load: %v", err)
			}
			// Never overwrite an existing key; --if-missing leaves it and succeeds.
			if _, _, code := runCmd(t, "", "keygen", "--alg", alg, "--out", out); code == 0 {
				t.Fatal("keygen overwrote an existing file")
			}
			if _, e, code := runCmd(t, "", "keygen", "--alg", alg, "--out", out, "--if-missing"); code != 0 {
				t.Fatalf("--if-missing on an existing key: exit %d: %s", code, e)
			}
			if again, _ := os.ReadFile(out); !bytes.Equal(again, data) {
				t.Fatal("--if-missing changed the existing key")
			}
		})
	}
}

var servingRE = regexp.MustCompile(`grpc_addr"?[=:]"?([0-9.:]+)[ ,"]*http_addr"?[=:]"?([0-9.:]+)`)

// startServe runs `tokengate serve` in-process and returns its addresses once it serves.
func startServe(t *testing.T, ctx context.Context, cfgPath string, extra ...string) (grpcAddr, httpAddr string, logs *testkit.LogBuffer, done chan error) {
	t.Helper()
	logs = &testkit.LogBuffer{}
	done = make(chan error, 1)
	args := append([]string{"serve", "--config", cfgPath, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, extra...)
	go func() { done <- run(ctx, args, strings.NewReader(""), &bytes.Buffer{}, logs) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("serve logs:\n%s", logs.String())
		}
	})
	testkit.WaitFor(t, "serve to start", 15*time.Second, 10*time.Millisecond, func() bool {
		select {
		case err := <-done:
			t.Fatalf("serve exited early: %v", err)
		default:
		}
		if m := servingRE.FindStringSubmatch(logs.String()); m != nil {
			grpcAddr, httpAddr = m[1], m[2]
			return true
		}
		return false
	})
	return grpcAddr, httpAddr, logs, done
}

const serveConfig = `providers:
  - name: idp
    issuer: "%[1]s"
    jwks_uri: "%[1]s/.well-known/jwks.json"
    audiences: [api://gateway]
routes:
%[2]s  - name: api
    match: {path_prefix: /}
    authenticate: {jwt: {providers: [idp]}}
    upstream: {remove: {}}
`

// TestServeSignalsAndReloadUnderLoad: a loop of Checks across SIGHUP reloads sees zero errors,
// a reload adds a route, an invalid file is refused while the old configuration serves, and
// SIGTERM drains and exits 0.
func TestServeSignalsAndReloadUnderLoad(t *testing.T) {
	idp, err := testenv.NewIdP("", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	cfgPath := filepath.Join(t.TempDir(), "tokengate.yaml")
	write := func(extraRoute string) {
		if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(serveConfig, idp.URL(), extraRoute)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("")
	grpcAddr, httpAddr, logs, done := startServe(t, context.Background(), cfgPath, "--log-format", "json")

	waitReady(t, httpAddr)
	tok, err := idp.CallerToken(map[string]any{"aud": "api://gateway", "sub": "alice"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	assertHealthAndReflection(t, conn)
	check := func(route string) (code.Code, error) {
		req := testenv.CheckRequestFor(mustRequest(t, "/x", "Bearer "+tok))
		if route != "" {
			req.Attributes.ContextExtensions = map[string]string{"route": route}
		}
		resp, err := client.Check(context.Background(), req)
		return code.Code(resp.GetStatus().GetCode()), err
	}

	var stop atomic.Bool
	var checks, failures atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				c, err := check("")
				checks.Add(1)
				if err != nil || c != code.Code_OK {
					failures.Add(1)
				}
			}
		}()
	}
	for i := range 5 {
		write(fmt.Sprintf("  - name: added%d\n    authenticate: {none: {}}\n    upstream: {remove: {}}\n", i))
		syscall.Kill(os.Getpid(), syscall.SIGHUP)
		waitLog(t, logs, fmt.Sprintf(`"routes":%d`, 2), i+1)
	}
	if c, _ := check("added4"); c != code.Code_OK {
		t.Fatalf("route added by reload: %v", c)
	}
	// An invalid file is refused; the old configuration keeps serving.
	os.WriteFile(cfgPath, []byte("routes: [{name: x, bogus: 1}]\n"), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitLog(t, logs, "reload refused", 1)
	if c, _ := check("added4"); c != code.Code_OK {
		t.Fatalf("after a refused reload the old configuration must serve: %v", c)
	}
	stop.Store(true)
	wg.Wait()
	if checks.Load() < 20 || failures.Load() != 0 {
		t.Fatalf("%d checks across reloads, %d failed", checks.Load(), failures.Load())
	}
	t.Logf("%d checks across 5 reloads, 0 failed", checks.Load())

	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !strings.HasPrefix(line, "{") {
			t.Fatalf("--log-format json wrote a non-JSON line: %q", line)
		}
		if strings.Contains(line, tok) {
			t.Fatal("a log line holds the caller's token")
		}
	}

	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil || exitCode(err) != 0 {
			t.Fatalf("SIGTERM: %v (exit %d)", err, exitCode(err))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
}

func mustRequest(t *testing.T, path, auth string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodGet, "http://api.example.com"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", auth)
	return r
}

func waitReady(t *testing.T, httpAddr string) {
	t.Helper()
	testkit.WaitFor(t, "/readyz to answer 200", 10*time.Second, 10*time.Millisecond, func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func waitLog(t *testing.T, logs *testkit.LogBuffer, s string, n int) {
	t.Helper()
	testkit.WaitFor(t, fmt.Sprintf("%q %d times in the log", s, n), 10*time.Second, 5*time.Millisecond, func() bool {
		return strings.Count(logs.String(), s) >= n
	})
}

// assertHealthAndReflection: grpc.health.v1 answers SERVING for the server and for the
// Authorization service, and server reflection lists the services (grpcurl and ghz need it).
func assertHealthAndReflection(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"", "envoy.service.auth.v3.Authorization"} {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q: %v %v", svc, resp.GetStatus(), err)
		}
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"envoy.service.auth.v3.Authorization", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Fatalf("reflection lists %v, missing %s", names, want)
		}
	}
}
