package testkit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"testing"
	"time"
)

// CA is a throwaway certificate authority: a self-signed P-256 certificate that may only sign
// certificates (RFC 5280 §4.2.1.3 keyCertSign, §4.2.1.9 cA), with its key, its PEM (for the
// CA files a configuration names) and a pool holding it (for a tls.Config's RootCAs or
// ClientCAs).
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  []byte
	Pool *x509.CertPool
}

// LeafSpec says what goes into a leaf certificate. Server picks the extended key usage
// (RFC 5280 §4.2.1.12): id-kp-serverAuth, else id-kp-clientAuth, never both, so that a test can
// show a certificate refused for the other use. DNS, IPs and URIs are the subjectAltName entries
// (RFC 5280 §4.2.1.6); URIs carry SPIFFE IDs, for one.
type LeafSpec struct {
	CN     string
	Server bool
	DNS    []string
	IPs    []net.IP
	URIs   []string
}

// Leaf is an issued certificate with its P-256 key, parsed, as DER and as PEM (the key as a
// PKCS#8 "PRIVATE KEY" block, what nginx, Redis and crypto/tls all read).
type Leaf struct {
	Cert            *x509.Certificate
	Key             crypto.Signer
	DER             []byte
	CertPEM, KeyPEM []byte
}

// NewCA makes a CA whose subject common name is name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := template(t, name)
	tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
	der, cert := create(t, tmpl, tmpl, key, key)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Pool: pool}
}

// Issue signs a leaf certificate as s describes with the CA.
func (ca *CA) Issue(t testing.TB, s LeafSpec) *Leaf {
	t.Helper()
	return leaf(t, s, ca.Cert, ca.Key)
}

// SelfSigned makes a leaf certificate as s describes, signed with its own key: a client
// certificate that no CA vouches for, as RFC 8705 §2.2 (self_signed_tls_client_auth) and
// certificate-bound tokens (§3) allow.
func SelfSigned(t testing.TB, s LeafSpec) *Leaf {
	t.Helper()
	return leaf(t, s, nil, nil)
}

// X5T is the certificate's x5t#S256 confirmation method, the base64url-encoded SHA-256 of its
// DER encoding (RFC 8705 §3.1), worked out here without the code under test.
func (l *Leaf) X5T() string {
	sum := sha256.Sum256(l.DER)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// TLS returns the certificate and key for a tls.Config's Certificates or GetClientCertificate.
func (l *Leaf) TLS() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{l.DER}, PrivateKey: l.Key, Leaf: l.Cert}
}

// Write writes the certificate's PEM to certFile and the key's to keyFile, mode 0600.
func (l *Leaf) Write(t testing.TB, certFile, keyFile string) {
	t.Helper()
	for file, data := range map[string][]byte{certFile: l.CertPEM, keyFile: l.KeyPEM} {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// leaf makes the certificate of s, signed by parent with parentKey, or self-signed when parent
// is nil.
func leaf(t testing.TB, s LeafSpec, parent *x509.Certificate, parentKey crypto.Signer) *Leaf {
	t.Helper()
	key := newKey(t)
	tmpl := template(t, s.CN)
	tmpl.KeyUsage, tmpl.ExtKeyUsage = x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if s.Server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	tmpl.DNSNames, tmpl.IPAddresses = s.DNS, s.IPs
	for _, u := range s.URIs {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, cert := create(t, tmpl, parent, key, parentKey)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &Leaf{Cert: cert, Key: key, DER: der,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// template is the part every certificate shares: valid from an hour ago (clock skew between the
// test and the servers it starts does not matter) for a day, with a random serial number, so
// that a renewed certificate is told apart from the one it replaces. RFC 5280 §4.1.2.2 wants it
// positive and at most 20 octets: 128 random bits, plus one.
func template(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	return &x509.Certificate{SerialNumber: serial.Add(serial, big.NewInt(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)}
}

func create(t testing.TB, tmpl, parent *x509.Certificate, key *ecdsa.PrivateKey, parentKey crypto.Signer) ([]byte, *x509.Certificate) {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return der, cert
}
