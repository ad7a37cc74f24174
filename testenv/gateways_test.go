package testenv_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/envoy"
	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/testenv"
)

// The shipped nginx and Caddy examples (envoy/nginx, envoy/caddy), run by the real nginx and
// Caddy of Debian's packages in front of the rig's echo upstream and tokengate's /authz (on its authz_addr).
// Under CI=true a missing gateway fails the test instead of skipping it.

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
	bin := testkit.Tool(t, "nginx", "nginx")
	s := startStack(t)
	dir := t.TempDir()
	listen := testkit.FreeAddr(t)
	conf, err := envoy.NginxConfig(envoy.Addrs{Listen: listen, Tokengate: s.App.AuthzAddr(), Upstream: strings.TrimPrefix(s.Echo.URL(), "http://")}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	testkit.StartProcess(t, listen, nil, bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
	exerciseGateway(t, s, "http://"+listen)
}

func TestCaddyForwardAuth(t *testing.T) {
	bin := testkit.Tool(t, "caddy", "caddy")
	s := startStack(t)
	dir := t.TempDir()
	listen := testkit.FreeAddr(t)
	conf, err := envoy.Caddyfile(envoy.Addrs{Listen: listen, Tokengate: s.App.AuthzAddr(), Upstream: strings.TrimPrefix(s.Echo.URL(), "http://")})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}
	testkit.StartProcess(t, listen, env, bin, "run", "--config", file, "--adapter", "caddyfile")
	exerciseGateway(t, s, "http://"+listen)
}
