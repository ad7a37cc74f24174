package jose

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testkit"
)

// rfc7638Key is the example key of RFC 7638 §3.1, with the thumbprint the RFC gives for it.
const (
	rfc7638Key        = `{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}`
	rfc7638Thumbprint = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
)

func TestJWKThumbprintRFC7638(t *testing.T) {
	got, err := JWKThumbprint([]byte(rfc7638Key))
	if err != nil || got != rfc7638Thumbprint {
		t.Fatalf("thumbprint = %q, %v; want %q", got, err, rfc7638Thumbprint)
	}
	// Members other than the required ones (alg, kid) and their order do not change it.
	reordered := `{"e":"AQAB","kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}`
	if got, err := JWKThumbprint([]byte(reordered)); err != nil || got != rfc7638Thumbprint {
		t.Fatalf("reordered thumbprint = %q, %v", got, err)
	}
	for _, bad := range []string{`{"kty":"oct","k":"AAAA"}`, `{"kty":"RSA"}`, `not json`, `{"kty":"EC","crv":"P-256","x":"AA","y":"AA","d":"AA"}`} {
		if _, err := JWKThumbprint([]byte(bad)); err == nil {
			t.Errorf("JWKThumbprint(%s) accepted", bad)
		}
	}
}

func TestCertificateThumbprint(t *testing.T) {
	// testkit works the thumbprint out itself: base64url(SHA-256(DER)) (RFC 8705 §3.1).
	cert := testkit.SelfSigned(t, testkit.LeafSpec{CN: "client"})
	if got, err := CertificateThumbprint(string(cert.CertPEM)); err != nil || got != cert.X5T() {
		t.Fatalf("x5t#S256 = %q, %v; want %q", got, err, cert.X5T())
	}
	for _, bad := range []string{"", "garbage", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("nope")})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: cert.DER}))} {
		if _, err := CertificateThumbprint(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("CertificateThumbprint(%.20q) = %v", bad, err)
		}
	}
}

func TestNormalizeHTU(t *testing.T) {
	for in, want := range map[string]string{
		"https://api.example.com/a/b":           "https://api.example.com/a/b",
		"HTTPS://API.Example.COM:443/a/b?x=1#f": "https://api.example.com/a/b",
		"http://h:80":                           "http://h/",
		"http://h:8080/x":                       "http://h:8080/x",
		"https://h/a/./b/../c":                  "https://h/a/c",
		"https://h/%7euser/%2f%41":              "https://h/~user/%2FA",
		"https://[::1]:443/p":                   "https://[::1]/p",
		"https://[::1]:8443/p":                  "https://[::1]:8443/p",
		"https://h/a/..":                        "https://h/",
		"https://h/a/b/..":                      "https://h/a/",
		"https://h:0443/":                       "https://h/",
	} {
		if got, ok := NormalizeHTU(in); !ok || got != want {
			t.Errorf("NormalizeHTU(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "/path", "ftp://h/", "https://", "https://u@h/", "https://h/%zz", "https://h/ a", "https://h:x/", "https://h/\x00"} {
		if got, ok := NormalizeHTU(bad); ok {
			t.Errorf("NormalizeHTU(%q) = %q, accepted", bad, got)
		}
	}
}

// dpopFixture signs proofs for one request with a fresh key.
type dpopFixture struct {
	key    *SigningKey
	now    time.Time
	token  string
	params DPoPParams
}

func newDPoPFixture(t testing.TB, alg string) *dpopFixture {
	t.Helper()
	k, err := GenerateKey(alg, "client")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	return &dpopFixture{key: k, now: now, token: "the.access.token", params: DPoPParams{
		Method: "GET", URL: "https://api.example.com/orders?id=1", AccessToken: "the.access.token",
		Algorithms: DefaultAlgorithms(), Now: now, Window: 60 * time.Second,
	}}
}

func (f *dpopFixture) claims() map[string]any {
	return map[string]any{"jti": "j-1", "htm": "GET", "htu": "https://api.example.com/orders",
		"iat": f.now.Unix(), "ath": AccessTokenHash(f.token)}
}

func (f *dpopFixture) sign(t testing.TB, claims, header map[string]any) string {
	t.Helper()
	p, err := f.key.SignDPoPProof(claims, header)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifyDPoPProof(t *testing.T) {
	for _, alg := range []string{"ES256", "RS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			f := newDPoPFixture(t, alg)
			jkt, err := f.key.Thumbprint()
			if err != nil {
				t.Fatal(err)
			}
			with := func(name string, v any) map[string]any {
				c := f.claims()
				if v == nil {
					delete(c, name)
				} else {
					c[name] = v
				}
				return c
			}
			pub, _ := f.key.PublicJWK()
			private := map[string]any{}
			for k, v := range pub {
				private[k] = v
			}
			private["d"] = "AAAA"
			other, _ := GenerateKey(alg, "other")
			otherPub, _ := other.PublicJWK()
			good := f.sign(t, f.claims(), nil)
			cases := []struct {
				name  string
				proof string
				check string // "" accepts
			}{
				{"valid", good, ""},
				{"valid htu normalised", f.sign(t, with("htu", "HTTPS://API.example.com:443/./orders"), nil), ""},
				{"iat at the window's edge", f.sign(t, with("iat", f.now.Add(-60*time.Second).Unix()), nil), ""},
				{"wrong typ", f.sign(t, f.claims(), map[string]any{"typ": "JWT"}), DPoPCheckTyp},
				{"no typ", f.sign(t, f.claims(), map[string]any{"typ": nil}), DPoPCheckTyp},
				{"alg not allowed", f.sign(t, f.claims(), map[string]any{"alg": "HS256"}), DPoPCheckAlg},
				{"alg none", f.sign(t, f.claims(), map[string]any{"alg": "none"}), DPoPCheckAlg},
				{"no jwk", f.sign(t, f.claims(), map[string]any{"jwk": nil}), DPoPCheckJWK},
				{"private jwk", f.sign(t, f.claims(), map[string]any{"jwk": private}), DPoPCheckJWK},
				{"symmetric jwk", f.sign(t, f.claims(), map[string]any{"jwk": map[string]any{"kty": "oct", "k": "AAAA"}}), DPoPCheckJWK},
				{"unsupported kty", f.sign(t, f.claims(), map[string]any{"jwk": map[string]any{"kty": "XYZ"}}), DPoPCheckJWK},
				{"jwk is a string", f.sign(t, f.claims(), map[string]any{"jwk": "key"}), DPoPCheckJWK},
				{"another key's jwk", f.sign(t, f.claims(), map[string]any{"jwk": otherPub}), DPoPCheckSignature},
				{"jku", f.sign(t, f.claims(), map[string]any{"jku": "https://evil/"}), DPoPCheckMalformed},
				{"crit", f.sign(t, f.claims(), map[string]any{"crit": []string{"x"}}), DPoPCheckMalformed},
				{"tampered payload", good[:strings.IndexByte(good, '.')+1] + base64.RawURLEncoding.EncodeToString([]byte(`{"jti":"j-1"}`)) + good[strings.LastIndexByte(good, '.'):], DPoPCheckSignature},
				{"wrong htm", f.sign(t, with("htm", "POST"), nil), DPoPCheckHTM},
				{"lower-case htm", f.sign(t, with("htm", "get"), nil), DPoPCheckHTM},
				{"wrong htu path", f.sign(t, with("htu", "https://api.example.com/other"), nil), DPoPCheckHTU},
				{"wrong htu host", f.sign(t, with("htu", "https://evil.example.com/orders"), nil), DPoPCheckHTU},
				{"htu http", f.sign(t, with("htu", "http://api.example.com/orders"), nil), DPoPCheckHTU},
				{"htu not a string", f.sign(t, with("htu", 5), nil), DPoPCheckHTU},
				{"stale iat", f.sign(t, with("iat", f.now.Add(-61*time.Second).Unix()), nil), DPoPCheckIAT},
				{"future iat", f.sign(t, with("iat", f.now.Add(61*time.Second).Unix()), nil), DPoPCheckIAT},
				{"iat string", f.sign(t, with("iat", "1800000000"), nil), DPoPCheckIAT},
				{"no iat", f.sign(t, with("iat", nil), nil), DPoPCheckIAT},
				{"wrong ath", f.sign(t, with("ath", AccessTokenHash("other")), nil), DPoPCheckATH},
				{"no ath", f.sign(t, with("ath", nil), nil), DPoPCheckATH},
				{"no jti", f.sign(t, with("jti", nil), nil), DPoPCheckJTI},
				{"empty jti", f.sign(t, with("jti", ""), nil), DPoPCheckJTI},
				{"bad base64", "!!!." + good[strings.IndexByte(good, '.')+1:], DPoPCheckMalformed},
				{"padded base64", good + "=", DPoPCheckMalformed},
				{"two segments", good[:strings.LastIndexByte(good, '.')], DPoPCheckMalformed},
				{"empty", "", DPoPCheckMalformed},
				{"too large", f.sign(t, with("pad", strings.Repeat("x", MaxDPoPProofBytes)), nil), DPoPCheckMalformed},
				{"header not JSON", base64.RawURLEncoding.EncodeToString([]byte("{")) + good[strings.IndexByte(good, '.'):], DPoPCheckMalformed},
			}
			for _, c := range cases {
				got, err := VerifyDPoPProof(c.proof, f.params)
				if c.check == "" {
					if err != nil || got.JKT != jkt || got.ID != "j-1" {
						t.Errorf("%s: %+v, %v; want accepted with jkt %s", c.name, got, err, jkt)
					}
					continue
				}
				var de *DPoPError
				if !errors.As(err, &de) || de.Check != c.check || !errors.Is(err, ErrInvalidDPoPProof) {
					t.Errorf("%s: err = %v; want check %s", c.name, err, c.check)
				}
			}
		})
	}
}

// TestVerifyDPoPProofAllowList: an algorithm outside the provider's allow-list is refused even
// when it is one tokengate can verify.
func TestVerifyDPoPProofAllowList(t *testing.T) {
	f := newDPoPFixture(t, "ES256")
	f.params.Algorithms = []string{"RS256"}
	_, err := VerifyDPoPProof(f.sign(t, f.claims(), nil), f.params)
	var de *DPoPError
	if !errors.As(err, &de) || de.Check != DPoPCheckAlg {
		t.Fatalf("err = %v; want alg", err)
	}
}

// FuzzDPoPProof: no input panics, and every refusal is a *DPoPError with a known check.
func FuzzDPoPProof(f *testing.F) {
	fx := newDPoPFixture(f, "ES256")
	f.Add(fx.sign(f, fx.claims(), nil), "GET", "https://api.example.com/orders")
	f.Add(fx.sign(f, fx.claims(), map[string]any{"typ": "jwt"}), "POST", "http://h/")
	f.Add("a.b.c", "GET", "https://[::1]:443/%41")
	f.Add("", "", "")
	known := map[string]bool{DPoPCheckMalformed: true, DPoPCheckTyp: true, DPoPCheckAlg: true, DPoPCheckJWK: true,
		DPoPCheckSignature: true, DPoPCheckHTM: true, DPoPCheckHTU: true, DPoPCheckIAT: true, DPoPCheckATH: true, DPoPCheckJTI: true}
	f.Fuzz(func(t *testing.T, proof, method, url string) {
		p := fx.params
		p.Method, p.URL = method, url
		got, err := VerifyDPoPProof(proof, p)
		if err == nil {
			if got == nil || got.JKT == "" || got.ID == "" {
				t.Fatalf("accepted without a thumbprint or jti: %+v", got)
			}
			return
		}
		var de *DPoPError
		if !errors.As(err, &de) || !known[de.Check] {
			t.Fatalf("unexpected error %v", err)
		}
		_, _ = NormalizeHTU(url)
	})
}

// craftedRSAProof is a DPoP proof whose jwk is an RSA "key" of bits bits that is no real key (a
// modulus 2^(bits-1)+1, never factored or generated) with a signature of the modulus' length that
// verifies with nothing: what a caller can send for free to make the server do the work of an
// RSA verification with a huge modulus.
func craftedRSAProof(t *testing.T, f *dpopFixture, bits int) string {
	t.Helper()
	n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
	n.SetBit(n, 0, 1)
	hdr := mustJSON(t, map[string]any{"typ": DPoPProofType, "alg": "RS256",
		"jwk": map[string]any{"kty": "RSA", "n": b64(n.Bytes()), "e": "AQAB"}})
	sig := make([]byte, (bits+7)/8)
	sig[len(sig)-1] = 2
	return b64(hdr) + "." + b64(mustJSON(t, f.claims())) + "." + b64(sig)
}

// TestDPoPProofRSAKeyCeiling (docs/security.md#jose-hardening): a proof's RSA key above 8192
// bits is refused as its jwk, before the signature is looked at. Before the ceiling an 8 KiB proof
// carried a modulus of about 20,000 bits with a signature of its length, and each such proof cost
// the server an RSA verification with it.
func TestDPoPProofRSAKeyCeiling(t *testing.T) {
	f := newDPoPFixture(t, "RS256")
	for _, c := range []struct {
		bits  int
		check string
	}{
		{8192, DPoPCheckSignature}, // a usable size: the (bogus) signature is checked, and fails
		{8193, DPoPCheckJWK},
		{16384, DPoPCheckJWK},
		{20000, DPoPCheckJWK}, // about the largest whose proof, signature included, fits in 8 KiB
	} {
		proof := craftedRSAProof(t, f, c.bits)
		if len(proof) > MaxDPoPProofBytes {
			t.Fatalf("%d bits: proof of %d bytes is over the size limit", c.bits, len(proof))
		}
		_, err := VerifyDPoPProof(proof, f.params)
		var de *DPoPError
		if !errors.As(err, &de) || de.Check != c.check || !errors.Is(err, ErrInvalidDPoPProof) {
			t.Errorf("%d-bit RSA jwk: err = %v; want check %s", c.bits, err, c.check)
		}
	}
}

// TestDPoPProofJKTBeforeSignature: with DPoPParams.JKT set, a proof whose jwk is another key is
// refused as jkt even when its signature would fail too: the cheap comparison comes first.
func TestDPoPProofJKTBeforeSignature(t *testing.T) {
	f := newDPoPFixture(t, "ES256")
	jkt, err := f.key.Thumbprint()
	if err != nil {
		t.Fatal(err)
	}
	other, err := GenerateKey("ES256", "other")
	if err != nil {
		t.Fatal(err)
	}
	otherPub, err := other.PublicJWK()
	if err != nil {
		t.Fatal(err)
	}
	f.params.JKT = jkt
	if got, err := VerifyDPoPProof(f.sign(t, f.claims(), nil), f.params); err != nil || got.JKT != jkt {
		t.Fatalf("the token's key: %+v, %v", got, err)
	}
	for name, proof := range map[string]string{
		"signed by the other key":            func() string { g := *f; g.key = other; return g.sign(t, f.claims(), nil) }(),
		"the other key's jwk, our signature": f.sign(t, f.claims(), map[string]any{"jwk": otherPub}),
	} {
		_, err := VerifyDPoPProof(proof, f.params)
		var de *DPoPError
		if !errors.As(err, &de) || de.Check != DPoPCheckJKT {
			t.Errorf("%s: err = %v; want check jkt", name, err)
		}
	}
}

// TestDPoPProofAccessTokenSum: ath is compared with AccessTokenSum when it is given (the
// verifier's hash of the token), exactly as with the token itself.
func TestDPoPProofAccessTokenSum(t *testing.T) {
	f := newDPoPFixture(t, "ES256")
	proof := f.sign(t, f.claims(), nil)
	p := f.params
	p.AccessToken, p.AccessTokenSum = "", sha256.Sum256([]byte(f.token))
	if _, err := VerifyDPoPProof(proof, p); err != nil {
		t.Fatalf("the token's sum: %v", err)
	}
	p.AccessToken, p.AccessTokenSum = f.token, sha256.Sum256([]byte("another token"))
	var de *DPoPError
	if _, err := VerifyDPoPProof(proof, p); !errors.As(err, &de) || de.Check != DPoPCheckATH {
		t.Fatalf("another token's sum: err = %v; want check ath", err)
	}
}
