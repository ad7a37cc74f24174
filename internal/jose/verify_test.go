package jose

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/tokengate/tokengate/internal/defaults"
)

// Round trips for every signing algorithm through the public API only:
// Sign -> PublicJWKS -> ParseKeySet -> Parse -> Verify.
func TestRoundTripAllAlgorithms(t *testing.T) {
	var keys []*SigningKey
	for _, alg := range SigningAlgorithms() {
		keys = append(keys, testKey(t, alg))
	}
	ks := keySetOf(t, keys...) // one set with every key: selection by kid
	if ks.Len() != len(keys) {
		t.Fatalf("Len = %d", ks.Len())
	}
	for _, k := range keys {
		t.Run(k.Algorithm(), func(t *testing.T) {
			if !ks.Has(k.KeyID()) {
				t.Fatalf("Has(%s) = false", k.KeyID())
			}
			tok, err := k.Sign(map[string]any{
				"iss": "https://idp.example", "sub": "alice", "aud": []string{"a", "b"},
				"exp": 1900000000.5, "nbf": 1800000000, "iat": 1800000000, "jti": "j", "n": 7,
			}, "at+jwt")
			if err != nil {
				t.Fatal(err)
			}
			u, err := Parse(tok, 0)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if u.Issuer() != "https://idp.example" || u.KeyID() != k.KeyID() || !u.HasKeyID() ||
				u.Algorithm() != k.Algorithm() || u.Type() != "at+jwt" {
				t.Fatalf("unverified accessors wrong: %q %q %q %q", u.Issuer(), u.KeyID(), u.Algorithm(), u.Type())
			}
			c, err := u.Verify(ks, []string{k.Algorithm()})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := time.Unix(1900000000, 500000000).UTC()
			if c.Issuer != "https://idp.example" || c.Subject != "alice" || c.ID != "j" ||
				strings.Join(c.Audience, ",") != "a,b" || !c.HasExpiry || !c.Expiry.Equal(want) ||
				!c.HasNotBefore || !c.HasIssuedAt || c.IssuedAt.Unix() != 1800000000 ||
				!ValidTime(c.HasExpiry, c.Expiry) {
				t.Fatalf("claims = %+v", c)
			}
			if n, ok := c.Raw["n"].(interface{ String() string }); !ok || n.String() != "7" {
				t.Fatalf("Raw[n] = %#v, want json.Number 7", c.Raw["n"])
			}
			// The same token with any other key of the set: wrong key named by kid.
			other := keys[0]
			if other == k {
				other = keys[1]
			}
			forged := strings.Replace(tok, b64FieldHeader(t, tok), b64([]byte(fmt.Sprintf(`{"alg":%q,"kid":%q,"typ":"at+jwt"}`, k.Algorithm(), other.KeyID()))), 1)
			if _, err := parseVerify(forged, 0, ks, VerificationAlgorithms()); err == nil {
				t.Fatal("token verified with a key it was not signed with")
			}
		})
	}
}

func b64FieldHeader(t *testing.T, tok string) string {
	t.Helper()
	return tok[:strings.IndexByte(tok, '.')]
}

// RFC 8725 §3.1 (docs/security.md#jose-hardening): header alg must equal the key's alg.
func TestAlgMustMatchKey(t *testing.T) {
	rs := testKey(t, "RS256")
	es := testKey(t, "ES256")
	withAlg := keySetOf(t, rs, es)
	noAlgDoc := jwksWithout(t, []*SigningKey{rs, es}, "alg")
	noAlg, _, err := ParseKeySet(noAlgDoc)
	if err != nil {
		t.Fatal(err)
	}
	// Legitimately signed PS256 with the RSA key published as RS256.
	ps := signRaw(t, "PS256", rs.priv, `{"alg":"PS256","kid":"kid-rs256"}`, testClaims)
	// jwx alone (what Verify would do without the guard) accepts it:
	if _, err := jws.Verify([]byte(ps), jws.WithKey(jwa.PS256, rs.priv.Public())); err != nil {
		t.Fatalf("precondition: PS256 token must be validly signed: %v", err)
	}
	es384onP256 := signRaw(t, "ES256", es.priv, `{"alg":"ES256","kid":"kid-es256"}`, testClaims)
	cases := []struct {
		name    string
		tok     string
		ks      *KeySet
		allowed []string
		want    error // nil = verifies
	}{
		{"PS256 header on RS256 JWK", ps, withAlg, []string{"RS256", "PS256"}, ErrUnsupportedAlg},
		{"PS256 header on JWK without alg (RSA family, allowed)", ps, noAlg, []string{"RS256", "PS256"}, nil},
		{"PS256 on JWK without alg, PS256 not allowed", ps, noAlg, []string{"RS256"}, ErrUnsupportedAlg},
		{"ES256 header on RSA JWK without alg", signRaw(t, "ES256", es.priv, `{"alg":"ES256","kid":"kid-rs256"}`, testClaims), noAlg, []string{"ES256", "RS256"}, ErrUnsupportedAlg},
		{"RS256 header on EC JWK without alg", signRaw(t, "RS256", rs.priv, `{"alg":"RS256","kid":"kid-es256"}`, testClaims), noAlg, []string{"ES256", "RS256"}, ErrUnsupportedAlg},
		{"ES384 header on P-256 JWK without alg", strings.Replace(es384onP256, b64([]byte(`{"alg":"ES256","kid":"kid-es256"}`)), b64([]byte(`{"alg":"ES384","kid":"kid-es256"}`)), 1), noAlg, []string{"ES256", "ES384"}, ErrUnsupportedAlg},
		{"RS256 valid but not in allow-list", signRaw(t, "RS256", rs.priv, `{"alg":"RS256","kid":"kid-rs256"}`, testClaims), withAlg, []string{"ES256"}, ErrUnsupportedAlg},
		{"RS256 valid, empty allow-list", signRaw(t, "RS256", rs.priv, `{"alg":"RS256","kid":"kid-rs256"}`, testClaims), withAlg, nil, ErrUnsupportedAlg},
		{"RS256 valid", signRaw(t, "RS256", rs.priv, `{"alg":"RS256","kid":"kid-rs256"}`, testClaims), withAlg, []string{"RS256"}, nil},
		{"RS256 valid on key without alg", signRaw(t, "RS256", rs.priv, `{"alg":"RS256","kid":"kid-rs256"}`, testClaims), noAlg, []string{"RS256"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseVerify(tc.tok, 0, tc.ks, tc.allowed)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				return
			}
			checkErr(t, err, tc.want, tc.tok, "kid-rs256", "kid-es256")
		})
	}
}

// RFC 8725 §3.1 (docs/security.md#jose-hardening): alg none in any case or empty, and HS256 keyed
// with the RSA public key (PEM, DER, JWK) are refused even when the caller
// (wrongly) allows them.
func TestNoneAndHMACConfusion(t *testing.T) {
	rs := testKey(t, "RS256")
	ks := keySetOf(t, rs)
	pub := rs.priv.Public().(*rsa.PublicKey)
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(pub)})
	jwkBytes := jwksWithout(t, []*SigningKey{rs})
	jwkOne := jwkBytes[len(`{"keys":[`) : len(jwkBytes)-2]
	everything := append(VerificationAlgorithms(), "HS256", "HS384", "HS512", "none", "NONE", "None", "")

	type tc struct {
		name string
		tok  string
		want error
	}
	var cases []tc
	for _, none := range []string{"none", "NONE", "nOnE", ""} {
		h := b64([]byte(fmt.Sprintf(`{"alg":%q,"kid":"kid-rs256"}`, none)))
		p := b64([]byte(testClaims))
		cases = append(cases,
			tc{"alg " + none + " dummy sig", h + "." + p + ".AAAA", ErrUnsupportedAlg},
			tc{"alg " + none + " empty sig", h + "." + p + ".", ErrMalformed},
		)
	}
	cases = append(cases, tc{"alg missing", b64([]byte(`{"kid":"kid-rs256"}`)) + "." + b64([]byte(testClaims)) + ".AAAA", ErrMalformed})
	cases = append(cases, tc{"alg number", b64([]byte(`{"alg":256,"kid":"kid-rs256"}`)) + "." + b64([]byte(testClaims)) + ".AAAA", ErrMalformed})
	for _, secret := range []struct {
		name string
		b    []byte
	}{{"PEM", pemBytes}, {"PKCS1 PEM", pkcs1}, {"DER", der}, {"JWK", jwkOne}, {"JWKS", jwkBytes}} {
		for _, hs := range []string{"HS256", "HS384", "HS512"} {
			tok := signRaw(t, hs, secret.b, fmt.Sprintf(`{"alg":%q,"kid":"kid-rs256"}`, hs), testClaims)
			cases = append(cases, tc{hs + " keyed with RSA public " + secret.name, tok, ErrUnsupportedAlg})
		}
		// Also without kid, and with a case-changed alg.
		cases = append(cases, tc{"HS256 no kid " + secret.name, signRaw(t, "HS256", secret.b, `{"alg":"HS256"}`, testClaims), ErrUnsupportedAlg})
		hsLower := signRaw(t, "HS256", secret.b, `{"alg":"hs256","kid":"kid-rs256"}`, testClaims)
		cases = append(cases, tc{"hs256 lower-case " + secret.name, hsLower, ErrUnsupportedAlg})
	}
	cases = append(cases, tc{"JWE alg RSA-OAEP", b64([]byte(`{"alg":"RSA-OAEP","kid":"kid-rs256"}`)) + "." + b64([]byte(testClaims)) + ".AAAA", ErrUnsupportedAlg})
	cases = append(cases, tc{"ES256K", b64([]byte(`{"alg":"ES256K","kid":"kid-rs256"}`)) + "." + b64([]byte(testClaims)) + ".AAAA", ErrUnsupportedAlg})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseVerify(c.tok, 0, ks, everything)
			checkErr(t, err, c.want, c.tok, "kid-rs256", "alice-subject")
		})
	}
}

// RFC 7519 §4.1.4-4.1.6 (docs/security.md#jose-hardening): exp/nbf/iat presence is reported apart from
// value; NumericDate must be a finite JSON number below 2^53.
func TestNumericDates(t *testing.T) {
	es := testKey(t, "ES256")
	ks := keySetOf(t, es)
	sign := func(claims string) string {
		return signRaw(t, "ES256", es.priv, `{"alg":"ES256","kid":"kid-es256"}`, claims)
	}
	cases := []struct {
		name     string
		claims   string
		want     error
		has      bool
		valid    bool
		wantUnix float64
	}{
		{"exp 0 present but invalid", `{"exp":0}`, nil, true, false, 0},
		{"exp -0", `{"exp":-0}`, nil, true, false, 0},
		{"exp -1 present but invalid", `{"exp":-1}`, nil, true, false, -1},
		{"exp 1e-300 tiny", `{"exp":1e-300}`, nil, true, false, 0},
		{"exp absent", `{"sub":"x"}`, nil, false, false, 0},
		{"exp ordinary", `{"exp":1900000000}`, nil, true, true, 1900000000},
		{"exp exponent form", `{"exp":1.9e9}`, nil, true, true, 1900000000},
		{"exp fractional", `{"exp":1900000000.25}`, nil, true, true, 1900000000.25},
		{"exp 2^53-1", `{"exp":9007199254740991}`, nil, true, true, 9007199254740991},
		{"exp 2^53", `{"exp":9007199254740992}`, ErrMalformed, false, false, 0},
		{"exp 2^63", `{"exp":9223372036854775808}`, ErrMalformed, false, false, 0},
		{"exp 1e309", `{"exp":1e309}`, ErrMalformed, false, false, 0},
		{"exp -1e309", `{"exp":-1e309}`, ErrMalformed, false, false, 0},
		{"exp -2^60", `{"exp":-1152921504606846976}`, ErrMalformed, false, false, 0},
		{"exp numeric string", `{"exp":"1900000000"}`, ErrMalformed, false, false, 0},
		{"exp RFC 3339 string", `{"exp":"2030-01-01T00:00:00Z"}`, ErrMalformed, false, false, 0},
		{"exp null", `{"exp":null}`, ErrMalformed, false, false, 0},
		{"exp true", `{"exp":true}`, ErrMalformed, false, false, 0},
		{"exp array", `{"exp":[1900000000]}`, ErrMalformed, false, false, 0},
		{"nbf string", `{"exp":1900000000,"nbf":"2030-01-01"}`, ErrMalformed, false, false, 0},
		{"iat 1e309", `{"exp":1900000000,"iat":1e309}`, ErrMalformed, false, false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseVerify(sign(tc.claims), 0, ks, []string{"ES256"})
			if tc.want != nil {
				checkErr(t, err, tc.want, "1900000000", "2030")
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.HasExpiry != tc.has || ValidTime(c.HasExpiry, c.Expiry) != tc.valid {
				t.Fatalf("HasExpiry=%v ValidTime=%v, want %v %v", c.HasExpiry, ValidTime(c.HasExpiry, c.Expiry), tc.has, tc.valid)
			}
			if tc.has {
				got := float64(c.Expiry.UnixNano()) / 1e9
				if tc.wantUnix > 1e12 { // beyond UnixNano range: compare seconds
					got = float64(c.Expiry.Unix())
				}
				if d := got - tc.wantUnix; d > 1e-6 || d < -1e-6 {
					t.Fatalf("Expiry = %v (%v), want %v", c.Expiry, got, tc.wantUnix)
				}
			} else if !c.Expiry.IsZero() {
				t.Fatalf("absent exp gave %v", c.Expiry)
			}
		})
	}
	// nbf and iat: same presence semantics.
	c, err := parseVerify(sign(`{"exp":1900000000,"nbf":0,"iat":-5}`), 0, ks, []string{"ES256"})
	if err != nil {
		t.Fatal(err)
	}
	if !c.HasNotBefore || ValidTime(c.HasNotBefore, c.NotBefore) || !c.HasIssuedAt || c.IssuedAt.Unix() != -5 {
		t.Fatalf("nbf/iat: %+v", c)
	}
}

// RFC 7515 §7.1 compact only (docs/security.md#jose-hardening): JSON serialization (general and flattened) is not accepted.
func TestJSONSerializationRejected(t *testing.T) {
	rs := testKey(t, "RS256")
	ks := keySetOf(t, rs)
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, rs.KeyID())
	general, err := jws.Sign([]byte(testClaims), jws.WithJSON(), jws.WithKey(jwa.RS256, rs.priv, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	compact := signRaw(t, "RS256", rs.priv, `{"alg":"RS256","kid":"kid-rs256"}`, testClaims)
	p := strings.Split(compact, ".")
	flattened := fmt.Sprintf(`{"protected":%q,"payload":%q,"signature":%q}`, p[0], p[1], p[2])
	// Precondition: jwx verifies both JSON forms when asked without WithCompact.
	for _, j := range []string{string(general), flattened} {
		if _, err := jws.Verify([]byte(j), jws.WithKey(jwa.RS256, rs.priv.Public())); err != nil {
			t.Fatalf("precondition: jwx should accept JSON serialization: %v", err)
		}
	}
	for name, tok := range map[string]string{
		"general":             string(general),
		"flattened":           flattened,
		"flattened compacted": strings.ReplaceAll(flattened, `"`, ""),
		"compact in JSON":     fmt.Sprintf(`{"payload":%q}.%s`, p[1], compact),
		"JWE 5 segments":      compact + ".AAAA.BBBB",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseVerify(tok, 1<<16, ks, []string{"RS256"})
			checkErr(t, err, ErrMalformed, tok, "kid-rs256")
		})
	}
}

// spellings returns non-canonical spellings of tok that jwx's lenient
// base64 decoder maps to the same bytes (RFC 7515 §2, base64url without padding; docs/security.md#jose-hardening).
func spellings(t *testing.T, tok string) map[string]string {
	t.Helper()
	segs := strings.Split(tok, ".")
	pad := func(s string) string {
		if n := len(s) % 4; n != 0 {
			return s + strings.Repeat("=", 4-n)
		}
		return s + "===="
	}
	std := strings.NewReplacer("-", "+", "_", "/")
	sig := segs[2]
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, sig[len(sig)-1])
	trailing := sig[:len(sig)-1] + string(alphabet[last^1]) // flips an unused low bit
	out := map[string]string{
		"padded signature":           segs[0] + "." + segs[1] + "." + pad(segs[2]),
		"padded header":              pad(segs[0]) + "." + segs[1] + "." + segs[2],
		"std alphabet":               std.Replace(tok),
		"std alphabet padded":        std.Replace(pad(segs[0]) + "." + pad(segs[1]) + "." + pad(segs[2])),
		"non-zero trailing bits":     segs[0] + "." + segs[1] + "." + trailing,
		"trailing newline":           tok + "\n",
		"leading space":              " " + tok,
		"space inside":               segs[0] + "." + segs[1][:5] + " " + segs[1][5:] + "." + segs[2],
		"CR inside":                  segs[0] + "." + segs[1] + "." + segs[2][:10] + "\r" + segs[2][10:],
		"header with BOM":            b64([]byte("\ufeff"+`{"alg":"ES256","kid":"kid-es256"}`)) + "." + segs[1] + "." + segs[2],
		"empty header":               "." + segs[1] + "." + segs[2],
		"empty payload":              segs[0] + ".." + segs[2],
		"empty signature":            segs[0] + "." + segs[1] + ".",
		"signature length mod 4 = 1": segs[0] + "." + segs[1] + "." + segs[2] + "AAA",
	}
	if !strings.ContainsAny(tok, "-_") {
		t.Fatal("test token has no - or _; std alphabet spelling would be identical")
	}
	return out
}

func TestBase64SpellingsRejected(t *testing.T) {
	es := testKey(t, "ES256")
	ks := keySetOf(t, es)
	var tok string
	for i := 0; ; i++ { // the ES256 signature is random: find one with '-' or '_' and a trailing-bit char
		tok = signRaw(t, "ES256", es.priv, `{"alg":"ES256","kid":"kid-es256"}`, fmt.Sprintf(`{"sub":"alice-subject","exp":1900000000,"n":%d}`, i))
		if strings.ContainsAny(tok, "-_") {
			break
		}
	}
	if _, err := parseVerify(tok, 0, ks, []string{"ES256"}); err != nil {
		t.Fatalf("canonical token must verify: %v", err)
	}
	accepted := 0
	for name, variant := range spellings(t, tok) {
		t.Run(name, func(t *testing.T) {
			if _, err := jws.Verify([]byte(variant), jws.WithKey(jwa.ES256, es.priv.Public())); err == nil {
				accepted++ // what jwx alone would let through
			}
			_, err := parseVerify(variant, 0, ks, []string{"ES256"})
			checkErr(t, err, ErrMalformed, variant, "kid-es256", "alice-subject")
		})
	}
	if accepted < 4 {
		t.Errorf("expected jwx to accept at least the padded/std/trailing-bit spellings (got %d); see TestJWXPins", accepted)
	}
}

// docs/security.md#jose-hardening: the size cap and dot count come first, with
// bounded allocation whatever the input.
func TestSizeAndSegmentsBounded(t *testing.T) {
	es := testKey(t, "ES256")
	valid := signRaw(t, "ES256", es.priv, `{"alg":"ES256","kid":"kid-es256"}`, testClaims)
	segs := strings.Split(valid, ".")
	big := signRaw(t, "ES256", es.priv, `{"alg":"ES256","kid":"kid-es256"}`, `{"sub":"`+strings.Repeat("x", 10*1024)+`"}`)
	cases := []struct {
		name     string
		tok      string
		maxBytes int
	}{
		{"100k dots, cap 1 MiB", strings.Repeat(".", 100_000), 1 << 20},
		{"100k dots, default cap", strings.Repeat(".", 100_000), 0},
		{"1 MiB of dots between segments", segs[0] + strings.Repeat(".", 1<<20) + segs[2], 4 << 20},
		{"10 KB validly signed token", big, 8192},
		{"10 KB of letters", strings.Repeat("a", 10*1024), 8192},
		{"empty", "", 0},
		{"1 segment", segs[0], 0},
		{"2 segments", segs[0] + "." + segs[1], 0},
		{"4 segments", valid + "." + segs[2], 0},
		{"5 segments", valid + "." + segs[2] + "." + segs[2], 0},
		{"trailing dot", valid + ".", 0},
		{"leading dot", "." + valid, 0},
		{"one over the cap", valid, len(valid) - 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			allocs := testing.AllocsPerRun(5, func() { _, err = Parse(tc.tok, tc.maxBytes) })
			checkErr(t, err, ErrMalformed, "kid-es256")
			if allocs > 1 { // only the returned error
				t.Fatalf("rejection allocated %v times", allocs)
			}
		})
	}
	if _, err := Parse(valid, len(valid)); err != nil {
		t.Fatalf("token exactly at the cap must parse: %v", err)
	}
}

// RFC 8725 §3.10, RFC 7515 §4.1 (docs/security.md#jose-hardening): forbidden header parameters,
// on tokens otherwise validly signed by the right key.
func TestForbiddenHeaders(t *testing.T) {
	rs := testKey(t, "RS256")
	ks := keySetOf(t, rs)
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		_, _ = w.Write(jwksWithout(t, []*SigningKey{rs}))
	}))
	defer srv.Close()
	attackerJWK := string(jwksWithout(t, []*SigningKey{testKey(t, "ES256")}))
	attackerJWK = attackerJWK[len(`{"keys":[`) : len(attackerJWK)-2]

	base := `"alg":"RS256","kid":"kid-rs256"`
	cases := map[string]string{
		"crit exp":         `"crit":["exp"],"exp":1`,
		"crit empty":       `"crit":[]`,
		"b64 false":        `"b64":false,"crit":["b64"]`,
		"b64 true":         `"b64":true`,
		"zip":              `"zip":"DEF"`,
		"enc":              `"enc":"A128GCM"`,
		"jwk attacker key": `"jwk":` + attackerJWK,
		"jku httptest":     `"jku":"` + srv.URL + `/jwks"`,
		"x5u httptest":     `"x5u":"` + srv.URL + `/cert"`,
		"x5c":              `"x5c":["MIIBszCCAVmgAwIBAgIUQ=="]`,
		"p2c (JWE)":        `"p2c":100000000`,
		"epk (JWE)":        `"epk":{}`,
		"jku null":         `"jku":null`,
	}
	for name, extra := range cases {
		t.Run(name, func(t *testing.T) {
			tok := signRaw(t, "RS256", rs.priv, "{"+base+","+extra+"}", testClaims)
			_, err := parseVerify(tok, 0, ks, []string{"RS256"})
			checkErr(t, err, ErrForbiddenHeader, tok, "kid-rs256", srv.URL)
		})
	}
	if n := fetches.Load(); n != 0 {
		t.Fatalf("jku/x5u caused %d fetches", n)
	}
	// Controls: the same key and claims without the parameter verify, and a
	// certificate thumbprint (Entra ID, AD FS send x5t) is tolerated.
	for name, hdr := range map[string]string{
		"plain":    "{" + base + "}",
		"x5t":      "{" + base + `,"x5t":"nOo3ZDrODXEK1jKWhXslHR_KXEg"}`,
		"x5t#S256": "{" + base + `,"x5t#S256":"nOo3ZDrODXEK1jKWhXslHR_KXEgnOo3ZDrODXEK1jK"}`,
		"cty JWT":  "{" + base + `,"typ":"JWT","cty":"JWT"}`,
		"unknown":  "{" + base + `,"foo":{"bar":[1,2]}}`,
	} {
		if _, err := parseVerify(signRaw(t, "RS256", rs.priv, hdr, testClaims), 0, ks, []string{"RS256"}); err != nil {
			t.Errorf("control %s: %v", name, err)
		}
	}
	for name, hdr := range map[string]string{
		"x5t number":  "{" + base + `,"x5t":1}`,
		"x5t std b64": "{" + base + `,"x5t":"a+b/"}`,
		"typ number":  "{" + base + `,"typ":1}`,
		"cty object":  "{" + base + `,"cty":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseVerify(signRaw(t, "RS256", rs.priv, hdr, testClaims), 0, ks, []string{"RS256"})
			checkErr(t, err, ErrMalformed)
		})
	}
}

// Row 11: kid is a short printable-ASCII string and only a map key.
func TestKeyIDHandling(t *testing.T) {
	rs := testKey(t, "RS256")
	rs2 := testKey(t, "RS384") // a second RSA key: ambiguity without kid
	es := testKey(t, "ES256")
	one := keySetOf(t, rs)
	two := keySetOf(t, rs, es)
	// rs2 republished as RS256-capable (no alg) makes two RSA keys fit RS256.
	twoRSA, _, err := ParseKeySet(jwksWithout(t, []*SigningKey{rs, rs2}, "alg"))
	if err != nil {
		t.Fatal(err)
	}
	hdr := func(kid string) string { return `{"alg":"RS256","kid":` + kid + `}` }
	cases := []struct {
		name     string
		hdr      string
		ks       *KeySet
		maxBytes int
		want     error
	}{
		{"path traversal", hdr(`"../x"`), two, 0, ErrUnknownKey},
		{"path traversal to a real kid", hdr(`"../kid-rs256"`), two, 0, ErrUnknownKey},
		{"SQL", hdr(`"' OR '1'='1' --"`), two, 0, ErrUnknownKey},
		{"URL", hdr(`"https://evil.example/k"`), two, 0, ErrUnknownKey},
		{"10 KB", hdr(`"` + strings.Repeat("k", 10*1024) + `"`), two, 1 << 16, ErrMalformed},
		{"257 bytes", hdr(`"` + strings.Repeat("k", 257) + `"`), two, 0, ErrMalformed},
		{"number", hdr(`1`), two, 0, ErrMalformed},
		{"null", hdr(`null`), two, 0, ErrMalformed},
		{"array", hdr(`["kid-rs256"]`), two, 0, ErrMalformed},
		{"empty string", hdr(`""`), two, 0, ErrMalformed},
		{"NUL", hdr(`"kid-rs256\u0000"`), two, 0, ErrMalformed},
		{"newline", hdr(`"kid\nrs256"`), two, 0, ErrMalformed},
		{"non-ASCII", hdr(`"kid-rs256é"`), two, 0, ErrMalformed},
		{"DEL", hdr(`"kid-rs256\u007f"`), two, 0, ErrMalformed},
		{"case differs", hdr(`"KID-RS256"`), two, 0, ErrUnknownKey},
		{"missing, two RSA keys fit", `{"alg":"RS256"}`, twoRSA, 0, ErrUnknownKey},
		{"missing, one RS256 key in a mixed set", `{"alg":"RS256"}`, two, 0, nil},
		{"missing, single key", `{"alg":"RS256"}`, one, 0, nil},
		{"256 bytes is fine but unknown", hdr(`"` + strings.Repeat("k", 256) + `"`), two, 0, ErrUnknownKey},
		{"right kid", hdr(`"kid-rs256"`), two, 0, nil},
		{"nil key set", hdr(`"kid-rs256"`), nil, 0, ErrUnknownKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := signRaw(t, "RS256", rs.priv, tc.hdr, testClaims)
			_, err := parseVerify(tok, tc.maxBytes, tc.ks, []string{"RS256", "RS384"})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("want success: %v", err)
				}
				return
			}
			checkErr(t, err, tc.want, tok, "../", "OR '1'", "kkkk", "evil")
		})
	}
}

// Row 12: ES256 signatures are exactly 64-byte R||S (RFC 7518 §3.4).
func TestECDSASignatureForms(t *testing.T) {
	es := testKey(t, "ES256")
	ks := keySetOf(t, es)
	priv := es.priv.(*ecdsa.PrivateKey)
	tok := signRaw(t, "ES256", priv, `{"alg":"ES256","kid":"kid-es256"}`, testClaims)
	if _, err := parseVerify(tok, 0, ks, []string{"ES256"}); err != nil {
		t.Fatalf("valid ES256: %v", err)
	}
	raw := sigOf(t, tok)
	input := tok[:strings.LastIndexByte(tok, '.')]
	digest := sha256.Sum256([]byte(input))
	der, err := ecdsa.SignASN1(nil, priv, digest[:]) // a correct signature, DER-encoded
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(&priv.PublicKey, digest[:], der) {
		t.Fatal("precondition: DER signature must be mathematically valid")
	}
	flipped := append([]byte{}, raw...)
	flipped[10] ^= 1
	cases := map[string][]byte{
		"r=s=0":         make([]byte, 64),
		"DER":           der,
		"63 bytes":      raw[1:],
		"65 bytes":      append([]byte{0}, raw...),
		"65 bytes tail": append(append([]byte{}, raw...), 0),
		"128 bytes":     append(append([]byte{}, raw...), raw...),
		"bit flipped":   flipped,
		"r=0 s=valid":   append(make([]byte, 32), raw[32:]...),
		"all 0xff":      []byte(strings.Repeat("\xff", 64)),
	}
	for name, sig := range cases {
		t.Run(name, func(t *testing.T) {
			forged := withSig(tok, sig)
			_, err := parseVerify(forged, 0, ks, []string{"ES256"})
			checkErr(t, err, ErrBadSignature, forged, "kid-es256")
			// And jwx itself (without our length pre-check) refuses it too.
			if _, err := jws.Verify([]byte(forged), jws.WithKey(jwa.ES256, priv.Public())); err == nil {
				t.Fatalf("jwx accepted ES256 signature form %q", name)
			}
		})
	}
}

// Row 19: duplicate members, invalid UTF-8, deep nesting, wrong JSON types;
// all on tokens validly signed by the right key.
func TestStrictJSON(t *testing.T) {
	rs := testKey(t, "RS256")
	ks := keySetOf(t, rs)
	good := `{"alg":"RS256","kid":"kid-rs256"}`
	nest := func(n int) string { return `{"a":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}` }
	cases := []struct {
		name, hdr, payload string
		want               error
	}{
		{"duplicate alg", `{"alg":"RS256","alg":"none","kid":"kid-rs256"}`, testClaims, ErrMalformed},
		{"duplicate alg via escape", `{"alg":"RS256","\u0061lg":"RS256","kid":"kid-rs256"}`, testClaims, ErrMalformed},
		{"duplicate kid", `{"alg":"RS256","kid":"kid-rs256","kid":"kid-rs256"}`, testClaims, ErrMalformed},
		{"duplicate sub", good, `{"sub":"alice","sub":"admin","exp":1900000000}`, ErrMalformed},
		{"duplicate iss", good, `{"iss":"a","iss":"b"}`, ErrMalformed},
		{"duplicate aud", good, `{"aud":"a","aud":["b"]}`, ErrMalformed},
		{"duplicate nested", good, `{"cnf":{"jkt":"a","jkt":"b"}}`, ErrMalformed},
		{"invalid UTF-8 in header", `{"alg":"RS256","kid":"kid-rs256","x":"` + "\xff" + `"}`, testClaims, ErrMalformed},
		{"invalid UTF-8 in payload", good, `{"sub":"al` + "\xc3\x28" + `ice"}`, ErrMalformed},
		{"overlong UTF-8 in payload", good, `{"sub":"` + "\xc0\xaf" + `"}`, ErrMalformed},
		{"lone high surrogate", good, `{"sub":"\ud800"}`, ErrMalformed},
		{"lone low surrogate", good, `{"sub":"\udc00x"}`, ErrMalformed},
		{"high surrogate then non-surrogate", good, `{"sub":"\ud800\u0041"}`, ErrMalformed},
		{"surrogate in header", `{"alg":"RS256","kid":"kid-rs256","x":"\uDBFF"}`, testClaims, ErrMalformed},
		{"surrogate pair ok", good, `{"sub":"\ud83d\ude00"}`, nil},
		{"escaped backslash then ud800 ok", good, `{"sub":"\\ud800"}`, nil},
		{"5000-deep arrays", good, nest(5000), ErrMalformed},
		{"5000-deep objects", good, strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000), ErrMalformed},
		{"depth 33", good, nest(maxJSONDepth), ErrMalformed},
		{"depth 32 accepted", good, nest(maxJSONDepth - 1), nil},
		{"payload array", good, `[{"sub":"a"}]`, ErrMalformed},
		{"payload string", good, `"sub"`, ErrMalformed},
		{"payload null", good, `null`, ErrMalformed},
		{"payload trailing object", good, `{"sub":"a"}{"sub":"b"}`, ErrMalformed},
		{"payload trailing garbage", good, `{"sub":"a"}x`, ErrMalformed},
		{"payload truncated", good, `{"sub":"a"`, ErrMalformed},
		{"payload trailing whitespace ok", good, `{"sub":"a"} ` + "\n", nil},
		{"header array", `[{"alg":"RS256"}]`, testClaims, ErrMalformed},
		{"header trailing", good + `{}`, testClaims, ErrMalformed},
		{"aud number", good, `{"aud":1}`, ErrMalformed},
		{"aud array with number", good, `{"aud":["a",1]}`, ErrMalformed},
		{"aud object", good, `{"aud":{"a":1}}`, ErrMalformed},
		{"aud null", good, `{"aud":null}`, ErrMalformed},
		{"aud empty array kept", good, `{"aud":[]}`, nil},
		{"aud empty string kept", good, `{"aud":""}`, nil},
		{"iss number", good, `{"iss":1}`, ErrMalformed},
		{"sub bool", good, `{"sub":true}`, ErrMalformed},
		{"jti array", good, `{"jti":["a"]}`, ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := signRaw(t, "RS256", rs.priv, tc.hdr, tc.payload)
			_, err := parseVerify(tok, 1<<16, ks, []string{"RS256"})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("want success: %v", err)
				}
				return
			}
			checkErr(t, err, tc.want, tok, "alice", "admin", "kid-rs256")
		})
	}
	c, err := parseVerify(signRaw(t, "RS256", rs.priv, good, `{"aud":[]}`), 0, ks, []string{"RS256"})
	if err != nil || c.Audience == nil || len(c.Audience) != 0 {
		t.Fatalf("aud [] should be kept as an empty, non-nil list: %#v %v", c, err)
	}
}

func TestVerifyMisuse(t *testing.T) {
	var u *Unverified
	if _, err := u.Verify(nil, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("nil Unverified: %v", err)
	}
	if _, err := (&Unverified{}).Verify(nil, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("zero Unverified: %v", err)
	}
	if u.Issuer() != "" || u.KeyID() != "" || u.HasKeyID() || u.Algorithm() != "" || u.Type() != "" || (&Unverified{}).Issuer() != "" {
		t.Fatal("nil/zero Unverified accessors must return zero values")
	}
	var ks *KeySet
	if ks.Len() != 0 || ks.Has("x") || ks.KeyIDs() != nil {
		t.Fatal("nil KeySet accessors")
	}
	// Parse is deterministic with respect to the cap default.
	if _, err := Parse(strings.Repeat("a", defaults.MaxTokenBytes+1), -1); !errors.Is(err, ErrMalformed) {
		t.Fatal("negative maxBytes must mean the default cap")
	}
	_ = base64.RawURLEncoding
}

// KeySet and Unverified are shared by concurrent Checks (run with -race).
func TestConcurrentVerify(t *testing.T) {
	rs, es := testKey(t, "RS256"), testKey(t, "ES256")
	ks := keySetOf(t, rs, es)
	toks := []string{}
	for _, k := range []*SigningKey{rs, es} {
		tok, err := k.Sign(map[string]any{"sub": "s", "exp": 1900000000}, "")
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	u, err := Parse(toks[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 16)
	for i := 0; i < 16; i++ {
		go func(i int) {
			for j := 0; j < 20; j++ {
				if _, err := parseVerify(toks[(i+j)%2], 0, ks, []string{"RS256", "ES256"}); err != nil {
					done <- err
					return
				}
				c, err := u.Verify(ks, []string{"RS256"}) // one Unverified, many verifiers
				if err != nil || c.Subject != "s" {
					done <- fmt.Errorf("shared Unverified: %v", err)
					return
				}
			}
			done <- nil
		}(i)
	}
	for i := 0; i < 16; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	c1, _ := u.Verify(ks, []string{"RS256"})
	c2, _ := u.Verify(ks, []string{"RS256"})
	if c1 == c2 {
		t.Fatal("Verify must return a fresh Claims per call")
	}
}
