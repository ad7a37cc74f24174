package jose

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// testKeys caches generated keys per alg: RSA generation dominates test time.
var (
	testKeysMu sync.Mutex
	testKeys   = map[string]*SigningKey{}
)

func testKey(t testing.TB, alg string) *SigningKey {
	t.Helper()
	testKeysMu.Lock()
	defer testKeysMu.Unlock()
	if k, ok := testKeys[alg]; ok {
		return k
	}
	k, err := GenerateKey(alg, "kid-"+strings.ToLower(alg))
	if err != nil {
		t.Fatalf("GenerateKey(%s): %v", alg, err)
	}
	testKeys[alg] = k
	return k
}

func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("segment not raw base64url: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("segment not JSON: %v", err)
	}
	return m
}

func TestGenerateSignPublish(t *testing.T) {
	for _, alg := range SigningAlgorithms() {
		t.Run(alg, func(t *testing.T) {
			k := testKey(t, alg)
			if k.Algorithm() != alg || k.KeyID() != "kid-"+strings.ToLower(alg) {
				t.Fatalf("Algorithm/KeyID = %q/%q", k.Algorithm(), k.KeyID())
			}
			tok, err := k.Sign(map[string]any{"sub": "alice", "n": 1}, "at+jwt")
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			segs := strings.Split(tok, ".")
			if len(segs) != 3 {
				t.Fatalf("want 3 segments, got %d", len(segs))
			}
			hdr := decodeSegment(t, segs[0])
			if hdr["alg"] != alg || hdr["kid"] != k.KeyID() || hdr["typ"] != "at+jwt" || len(hdr) != 3 {
				t.Fatalf("header = %v", hdr)
			}
			if p := decodeSegment(t, segs[1]); p["sub"] != "alice" {
				t.Fatalf("payload = %v", p)
			}

			set, err := PublicJWKS([]*SigningKey{k})
			if err != nil {
				t.Fatalf("PublicJWKS: %v", err)
			}
			var doc struct {
				Keys []map[string]any `json:"keys"`
			}
			if err := json.Unmarshal(set, &doc); err != nil || len(doc.Keys) != 1 {
				t.Fatalf("JWKS = %s (%v)", set, err)
			}
			j := doc.Keys[0]
			if j["kid"] != k.KeyID() || j["alg"] != alg || j["use"] != "sig" {
				t.Fatalf("JWK = %v", j)
			}
			for _, priv := range []string{"d", "p", "q", "dp", "dq", "qi", "k", "oth"} {
				if _, ok := j[priv]; ok {
					t.Fatalf("public JWK carries private member %q", priv)
				}
			}
			// Independent check with jwx: the signature verifies with the published key.
			pub, err := jwk.ParseKey(mustJSON(t, j))
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if _, err := jws.Verify([]byte(tok), jws.WithKey(jwa.SignatureAlgorithm(alg), pub)); err != nil {
				t.Fatalf("jws.Verify: %v", err)
			}

			// PEM round trip (PKCS#8) keeps the same key.
			pemBytes, err := k.MarshalPEM()
			if err != nil {
				t.Fatalf("MarshalPEM: %v", err)
			}
			if blk, _ := pem.Decode(pemBytes); blk == nil || blk.Type != "PRIVATE KEY" {
				t.Fatalf("MarshalPEM did not write a PRIVATE KEY block")
			}
			k2, err := LoadSigningKey(pemBytes, alg, k.KeyID())
			if err != nil {
				t.Fatalf("LoadSigningKey(PKCS#8): %v", err)
			}
			set2, _ := PublicJWKS([]*SigningKey{k2})
			if string(set2) != string(set) {
				t.Fatalf("reloaded key publishes a different JWKS")
			}
		})
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestLoadSigningKeyFormats(t *testing.T) {
	rsaKey := testKey(t, "RS256").priv.(*rsa.PrivateKey)
	ecKey := testKey(t, "ES256").priv.(*ecdsa.PrivateKey)
	ec384 := testKey(t, "ES384").priv.(*ecdsa.PrivateKey)
	edKey := testKey(t, "EdDSA").priv.(ed25519.PrivateKey)
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p224DER, err := x509.MarshalPKCS8PrivateKey(p224)
	if err != nil {
		t.Fatal(err)
	}
	privJWK := func(raw any, set map[string]any) []byte {
		k, err := jwk.FromRaw(raw)
		if err != nil {
			t.Fatal(err)
		}
		for n, v := range set {
			if err := k.Set(n, v); err != nil {
				t.Fatal(err)
			}
		}
		return mustJSON(t, k)
	}
	pubJWK := func(raw any) []byte {
		k, err := jwk.PublicKeyOf(raw)
		if err != nil {
			t.Fatal(err)
		}
		return mustJSON(t, k)
	}
	ecParams := pemOf("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07})

	cases := []struct {
		name     string
		data     []byte
		alg, kid string
		ok       bool
		wantAlg  string
		wantKid  string
	}{
		{"PKCS1 RSA", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "PS256", "a", true, "PS256", "a"},
		{"SEC1 EC", pemOf("EC PRIVATE KEY", sec1), "ES256", "a", true, "ES256", "a"},
		{"SEC1 EC with EC PARAMETERS", append(ecParams, pemOf("EC PRIVATE KEY", sec1)...), "ES256", "a", true, "ES256", "a"},
		{"JWK RSA, alg+kid from JWK", privJWK(rsaKey, map[string]any{"alg": "RS384", "kid": "j1"}), "", "", true, "RS384", "j1"},
		{"JWK EC", privJWK(ecKey, nil), "ES256", "x", true, "ES256", "x"},
		{"JWK Ed25519", privJWK(edKey, map[string]any{"use": "sig"}), "EdDSA", "x", true, "EdDSA", "x"},
		{"JWK kid mismatch", privJWK(ecKey, map[string]any{"kid": "j1"}), "ES256", "other", false, "", ""},
		{"JWK alg mismatch", privJWK(ecKey, map[string]any{"alg": "ES256"}), "ES384", "x", false, "", ""},
		{"JWK use enc", privJWK(ecKey, map[string]any{"use": "enc"}), "ES256", "x", false, "", ""},
		{"JWK public only", pubJWK(&ecKey.PublicKey), "ES256", "x", false, "", ""},
		{"JWK oct", []byte(`{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}`), "ES256", "x", false, "", ""},
		{"JWK duplicate member", []byte(`{"kty":"EC","kty":"EC"}`), "ES256", "x", false, "", ""},
		{"RSA for ES256", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "ES256", "a", false, "", ""},
		{"EC for RS256", pemOf("EC PRIVATE KEY", sec1), "RS256", "a", false, "", ""},
		{"P-384 for ES256", pemOf("EC PRIVATE KEY", mustSEC1(t, ec384)), "ES256", "a", false, "", ""},
		{"P-256 for ES384", pemOf("EC PRIVATE KEY", sec1), "ES384", "a", false, "", ""},
		{"P-224", pemOf("PRIVATE KEY", p224DER), "ES256", "a", false, "", ""},
		{"Ed25519 for ES256", privJWK(edKey, nil), "ES256", "a", false, "", ""},
		{"RSA 1024", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small)), "RS256", "a", false, "", ""},
		{"HS256", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "HS256", "a", false, "", ""},
		{"none", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "none", "a", false, "", ""},
		{"empty kid", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "RS256", "", false, "", ""},
		{"kid with control char", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "RS256", "a\nb", false, "", ""},
		{"encrypted PEM", pemOf("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}), "RS256", "a", false, "", ""},
		{"certificate", pemOf("CERTIFICATE", []byte{1, 2, 3}), "RS256", "a", false, "", ""},
		{"garbage", []byte("hello"), "RS256", "a", false, "", ""},
		{"empty", nil, "RS256", "a", false, "", ""},
		{"two keys", append(pemOf("EC PRIVATE KEY", sec1), pemOf("EC PRIVATE KEY", sec1)...), "ES256", "a", false, "", ""},
		{"corrupt DER", pemOf("PRIVATE KEY", []byte{0x30, 0x01}), "ES256", "a", false, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, err := LoadSigningKey(tc.data, tc.alg, tc.kid)
			if !tc.ok {
				if err == nil {
					t.Fatalf("LoadSigningKey accepted %s", tc.name)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadSigningKey: %v", err)
			}
			if k.Algorithm() != tc.wantAlg || k.KeyID() != tc.wantKid {
				t.Fatalf("got %s/%s", k.Algorithm(), k.KeyID())
			}
			if _, err := k.Sign(map[string]any{"a": 1}, ""); err != nil {
				t.Fatalf("Sign: %v", err)
			}
		})
	}
}

func mustSEC1(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	b, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGenerateKeyRejects(t *testing.T) {
	for _, tc := range []struct{ alg, kid string }{
		{"HS256", "a"}, {"none", "a"}, {"", "a"}, {"ES512", "a"}, {"RS256", ""}, {"RS256", strings.Repeat("k", 257)},
	} {
		if _, err := GenerateKey(tc.alg, tc.kid); err == nil {
			t.Errorf("GenerateKey(%q, %q) succeeded", tc.alg, tc.kid)
		}
	}
}

func TestSignAndPublishErrors(t *testing.T) {
	k := testKey(t, "ES256")
	if _, err := k.Sign(map[string]any{"bad": make(chan int)}, ""); err == nil {
		t.Error("Sign accepted an unencodable claim")
	}
	if _, err := k.Sign(nil, "a\x00b"); err == nil {
		t.Error("Sign accepted a typ with a control character")
	}
	if _, err := PublicJWKS([]*SigningKey{k, k}); err == nil {
		t.Error("PublicJWKS accepted duplicate kids")
	}
	if _, err := PublicJWKS([]*SigningKey{nil}); err == nil {
		t.Error("PublicJWKS accepted a nil key")
	}
	empty, err := PublicJWKS(nil)
	if err != nil || string(empty) != `{"keys":[]}` {
		t.Errorf("PublicJWKS(nil) = %s, %v", empty, err)
	}
	tok, err := k.Sign(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if hdr := decodeSegment(t, strings.Split(tok, ".")[0]); len(hdr) != 2 {
		t.Errorf("typ \"\" should be omitted, header = %v", hdr)
	}
}
