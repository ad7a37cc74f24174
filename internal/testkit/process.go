package testkit

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Tool returns the path of an external program a test runs (nginx, caddy, redis-server,
// docker-compose, ...). Without it the test skips, or fails under CI=true, where .ci/run
// installs it (Debian package pkg). Debian puts nginx in /usr/sbin, which a non-root PATH may
// lack, so the sbin directories are looked in too.
func Tool(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found: CI must install it (apt-get install %s)", name, pkg)
	}
	t.Skipf("%s not found (apt-get install %s); CI=true makes this a failure", name, pkg)
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// FreeAddr returns a loopback host:port that was free a moment ago, for a program that takes
// its listen address on the command line or in a file.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// StartProcess runs bin with args (and env added to the test's environment) until the test
// ends, and waits until it accepts connections on addr. Its output is logged when the test
// fails.
func StartProcess(t testing.TB, addr string, env []string, bin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
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
			t.Logf("%s output:\n%s", filepath.Base(bin), out.String())
		}
	})
	WaitFor(t, fmt.Sprintf("%s to listen on %s", filepath.Base(bin), addr), 10*time.Second, 20*time.Millisecond, func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}
