package testkit_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tokengate/tokengate/internal/testkit"
)

// A leaf of the CA verifies against the CA's pool for its own usage only, carries the SANs asked
// for, and its PEM key is the key of its certificate.
func TestCAIssue(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	if !ca.Cert.IsCA || ca.Cert.Subject.CommonName != "test CA" || !bytes.Contains(ca.PEM, []byte("BEGIN CERTIFICATE")) {
		t.Fatalf("CA: IsCA %v, CN %q", ca.Cert.IsCA, ca.Cert.Subject.CommonName)
	}
	const spiffe = "spiffe://cluster.local/ns/default/sa/gw"
	srv := ca.Issue(t, testkit.LeafSpec{CN: "server", Server: true, DNS: []string{"svc.test"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, URIs: []string{spiffe}})
	cli := ca.Issue(t, testkit.LeafSpec{CN: "client"})
	if srv.Cert.Subject.CommonName != "server" || !slices.Equal(srv.Cert.DNSNames, []string{"svc.test"}) ||
		len(srv.Cert.IPAddresses) != 1 || !srv.Cert.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) ||
		len(srv.Cert.URIs) != 1 || srv.Cert.URIs[0].String() != spiffe {
		t.Fatalf("server leaf: CN %q, DNS %v, IPs %v, URIs %v", srv.Cert.Subject.CommonName, srv.Cert.DNSNames, srv.Cert.IPAddresses, srv.Cert.URIs)
	}
	if srv.Cert.SerialNumber.Cmp(cli.Cert.SerialNumber) == 0 || srv.Cert.SerialNumber.Sign() <= 0 {
		t.Fatalf("serials %v and %v: want distinct and positive", srv.Cert.SerialNumber, cli.Cert.SerialNumber)
	}
	verify := func(l *testkit.Leaf, usage x509.ExtKeyUsage) error {
		_, err := l.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool, KeyUsages: []x509.ExtKeyUsage{usage}})
		return err
	}
	if err := verify(srv, x509.ExtKeyUsageServerAuth); err != nil {
		t.Errorf("server leaf for serverAuth: %v", err)
	}
	if err := verify(srv, x509.ExtKeyUsageClientAuth); err == nil {
		t.Error("server leaf verified for clientAuth")
	}
	if err := verify(cli, x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("client leaf for clientAuth: %v", err)
	}
	if err := verify(cli, x509.ExtKeyUsageServerAuth); err == nil {
		t.Error("client leaf verified for serverAuth")
	}
	if err := srv.Cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}
	for _, l := range []*testkit.Leaf{srv, cli} {
		pair, err := tls.X509KeyPair(l.CertPEM, l.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(pair.Certificate[0], l.DER) || !l.Key.(*ecdsa.PrivateKey).Equal(pair.PrivateKey) {
			t.Errorf("%s: the PEM pair is not the leaf's certificate and key", l.Cert.Subject.CommonName)
		}
	}
	handshake(t, ca, srv, cli)
}

// handshake runs mutual TLS over a pipe with the leaves' TLS(): the server's for 127.0.0.1, the
// client's required and verified by the server.
func handshake(t *testing.T, ca *testkit.CA, srv, cli *testkit.Leaf) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	server := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{srv.TLS()}, ClientCAs: ca.Pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13})
	client := tls.Client(b, &tls.Config{Certificates: []tls.Certificate{cli.TLS()}, RootCAs: ca.Pool,
		ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13})
	done := make(chan error, 1)
	go func() { done <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if peer := server.ConnectionState().PeerCertificates; len(peer) != 1 || !bytes.Equal(peer[0].Raw, cli.DER) {
		t.Fatal("the server did not see the client's certificate")
	}
}

// A self-signed leaf is signed with its own key, is no CA, its x5t#S256 is base64url(SHA-256(DER)) (RFC
// 8705 §3.1), and Write puts its PEM pair on disk.
func TestSelfSigned(t *testing.T) {
	l := testkit.SelfSigned(t, testkit.LeafSpec{CN: "client"})
	// CheckSignatureFrom would refuse a parent that is not a CA; the signature itself is checked.
	if err := l.Cert.CheckSignature(l.Cert.SignatureAlgorithm, l.Cert.RawTBSCertificate, l.Cert.Signature); err != nil ||
		!bytes.Equal(l.Cert.RawIssuer, l.Cert.RawSubject) {
		t.Fatalf("not self-signed: %v", err)
	}
	if !slices.Equal(l.Cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || l.Cert.IsCA {
		t.Fatalf("usage %v, IsCA %v", l.Cert.ExtKeyUsage, l.Cert.IsCA)
	}
	sum := sha256.Sum256(l.DER)
	if want := base64.RawURLEncoding.EncodeToString(sum[:]); l.X5T() != want {
		t.Fatalf("X5T = %q, want %q", l.X5T(), want)
	}
	if l.X5T() == testkit.SelfSigned(t, testkit.LeafSpec{CN: "client"}).X5T() {
		t.Fatal("two certificates share a thumbprint")
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	l.Write(t, certFile, keyFile)
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string][]byte{certFile: l.CertPEM, keyFile: l.KeyPEM} {
		got, err := os.ReadFile(file)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %v, content differs %v", file, err, !bytes.Equal(got, want))
		}
		if fi, err := os.Stat(file); err != nil {
			t.Error(err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", file, fi.Mode().Perm())
		}
	}
}
