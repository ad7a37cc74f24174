package redisstore

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testkit"
)

// writeTLSFiles makes a throw-away CA and a server certificate for "redis.test" and writes
// ca.pem, server.pem and server-key.pem into dir.
func writeTLSFiles(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tokengate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "redis.test"},
		DNSNames: []string{"redis.test"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(srvKey)
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", "CERTIFICATE", caDER)
	write("server.pem", "CERTIFICATE", srvDER)
	write("server-key.pem", "PRIVATE KEY", keyDER)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool
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
