package redisstore

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/testkit"
)

// writeTLSFiles makes a throw-away CA and a server certificate for "redis.test" and writes
// ca.pem, server.pem and server-key.pem into dir.
func writeTLSFiles(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	ca := testkit.NewCA(t, "tokengate test CA")
	ca.Issue(t, testkit.LeafSpec{CN: "redis.test", Server: true, DNS: []string{"redis.test"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}).
		Write(t, filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem"))
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return ca.Pool
}

// Redis over TLS: ca_file and server_name verify the server; without the CA (system roots) or with
// the wrong name the connection is refused and tokens are fetched locally.
func TestRedisTLS(t *testing.T) {
	dir := t.TempDir()
	pool := writeTLSFiles(t, dir)
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	rp := testkit.StartRedisTLS(t, &tls.Config{RootCAs: pool, ServerName: "redis.test"},
		"--tls-cert-file", filepath.Join(dir, "server.pem"), "--tls-key-file", filepath.Join(dir, "server-key.pem"),
		"--tls-ca-cert-file", filepath.Join(dir, "ca.pem"), "--tls-auth-clients", "no")
	i := newIDP(t, 100)
	clk := newClock()
	fleet := newFleet(t, 2, rp.Addr(), clk, func(o *Options) {
		o.TLS, o.CAPEM, o.ServerName = true, caPEM, "redis.test"
	})
	cc := i.cc("tls")
	for _, r := range fleet {
		if _, err := r.cache.Fetch(bg, "partner", cc); err != nil {
			t.Fatal(err)
		}
		if err := r.store.Ping(bg); err != nil {
			t.Fatalf("TLS ping: %v", err)
		}
	}
	if i.n() != 1 {
		t.Fatalf("TLS fleet: %d IdP calls", i.n())
	}
	for name, mod := range map[string]func(*Options){
		"system roots": func(o *Options) { o.TLS = true },
		"wrong name":   func(o *Options) { o.TLS, o.CAPEM, o.ServerName = true, caPEM, "other.test" },
		"no TLS":       nil,
	} {
		r := newReplica(t, rp.Addr(), clk, mod)
		if err := r.store.Ping(bg); err == nil {
			t.Fatalf("%s: connected", name)
		}
		if _, err := r.cache.Fetch(bg, "partner", i.cc("tls-"+strings.ReplaceAll(name, " ", "-"))); err != nil {
			t.Fatalf("%s: no local fallback: %v", name, err)
		}
	}
}
