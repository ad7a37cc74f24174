package testenv_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/envoy"
	"github.com/tokengate/tokengate/testenv"
)

// The shipped nginx and Caddy examples (envoy/nginx, envoy/caddy), run by the real nginx and
// Caddy of Debian's packages in front of the rig's echo upstream and tokengate's /authz (on its authz_addr).
// Under CI=true a missing gateway fails the test instead of skipping it.

func lookGateway(t *testing.T, name string, paths ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed; .ci/run installs it", name)
	}
	t.Skipf("%s is not installed (apt-get install %s)", name, name)
	return ""
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startProcess runs a gateway until the test ends and waits for its port.
func startProcess(t *testing.T, addr string, env []string, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not listen on %s", name, addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exerciseGateway: a mint route, a fetch route and a 401 denial through the gateway.
func exerciseGateway(t *testing.T, s *testenv.Stack, base string) {
	t.Helper()
	tok, err := s.ClientToken(context.Background(), "echo.read")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("mint", func(t *testing.T) {
		r := call(t, base, "/mint/a", map[string]string{"Authorization": "Bearer " + tok, "X-Subject": "spoofed"})
		got := r.echo.Headers["Authorization"]
		if r.status != 200 || len(got) != 1 || got[0] == "Bearer "+tok || !strings.HasPrefix(got[0], "Bearer eyJ") {
			t.Fatalf("status %d, upstream Authorization %q", r.status, got)
		}
		if claims := introspect(t, s, strings.TrimPrefix(got[0], "Bearer ")); claims["aud"] != testenv.DemoMintAudience {
			t.Errorf("upstream token is not the minted one: %v", claims)
		}
		if sub := r.echo.Headers["X-Subject"]; len(sub) != 1 || sub[0] != testenv.DemoClientID {
			t.Errorf("X-Subject %q", sub)
		}
	})
	t.Run("fetch", func(t *testing.T) {
		r := call(t, base, "/fetch/a", map[string]string{"Authorization": "Bearer " + tok})
		got := r.echo.Headers["Authorization"]
		if r.status != 200 || len(got) != 1 || !strings.HasPrefix(got[0], "Bearer opaque-"+testenv.GatewayClientID) {
			t.Fatalf("status %d, upstream Authorization %q", r.status, got)
		}
	})
	t.Run("remove", func(t *testing.T) {
		r := call(t, base, "/remove/a", map[string]string{"Authorization": "Bearer " + tok})
		if r.status != 200 || len(r.echo.Headers["Authorization"]) != 0 {
			t.Fatalf("status %d, upstream Authorization %q", r.status, r.echo.Headers["Authorization"])
		}
	})
	t.Run("401", func(t *testing.T) {
		r := call(t, base, "/mint/a", nil)
		if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != `Bearer realm="tokengate"` {
			t.Fatalf("status %d, WWW-Authenticate %q: %s", r.status, r.header.Get("WWW-Authenticate"), r.body)
		}
		r = call(t, base, "/mint/a", map[string]string{"Authorization": "Bearer not.a.token"})
		if r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Fatalf("status %d, WWW-Authenticate %q", r.status, r.header.Get("WWW-Authenticate"))
		}
	})
}

func TestNginxAuthRequest(t *testing.T) {
	bin := lookGateway(t, "nginx", "/usr/sbin/nginx")
	s := startStack(t)
	dir := t.TempDir()
	listen := freeAddr(t)
	conf, err := envoy.NginxConfig(envoy.Addrs{Listen: listen, Tokengate: s.App.AuthzAddr(), Upstream: strings.TrimPrefix(s.Echo.URL(), "http://")}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	startProcess(t, listen, nil, bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
	exerciseGateway(t, s, "http://"+listen)
}

func TestCaddyForwardAuth(t *testing.T) {
	bin := lookGateway(t, "caddy")
	s := startStack(t)
	dir := t.TempDir()
	listen := freeAddr(t)
	conf, err := envoy.Caddyfile(envoy.Addrs{Listen: listen, Tokengate: s.App.AuthzAddr(), Upstream: strings.TrimPrefix(s.Echo.URL(), "http://")})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}
	startProcess(t, listen, env, bin, "run", "--config", file, "--adapter", "caddyfile")
	exerciseGateway(t, s, "http://"+listen)
}
