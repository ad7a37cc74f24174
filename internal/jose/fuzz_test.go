package jose

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tokengate/tokengate/internal/defaults"
)

// fuzzFixture uses fixed keys from testdata (test-only keys, never used
// elsewhere) so that every fuzz worker process shares the same key set and a
// corpus entry means the same thing in each of them.
type fuzzFixture struct {
	keys        map[string]*SigningKey // by alg
	ks          *KeySet
	validInputs map[string]bool // header.payload of the seeded valid tokens
	valid       []string
}

func newFuzzFixture(tb testing.TB) *fuzzFixture {
	tb.Helper()
	fx := &fuzzFixture{keys: map[string]*SigningKey{}, validInputs: map[string]bool{}}
	var list []*SigningKey
	for _, k := range []struct{ file, alg, kid string }{
		{"testdata/TEST-ONLY-fuzz-rsa.pem", "RS256", "fz-rs"},
		{"testdata/TEST-ONLY-fuzz-ec.pem", "ES256", "fz-es"},
		{"testdata/TEST-ONLY-fuzz-ed25519.pem", "EdDSA", "fz-ed"},
	} {
		data, err := os.ReadFile(k.file)
		if err != nil {
			tb.Fatal(err)
		}
		sk, err := LoadSigningKey(data, k.alg, k.kid)
		if err != nil {
			tb.Fatal(err)
		}
		fx.keys[k.alg] = sk
		list = append(list, sk)
	}
	fx.ks = keySetOf(tb, list...)
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		tok, err := fx.keys[alg].Sign(map[string]any{"iss": "https://idp.example", "sub": "fuzz-" + alg, "exp": 1900000000, "aud": "api"}, "at+jwt")
		if err != nil {
			tb.Fatal(err)
		}
		fx.valid = append(fx.valid, tok)
		fx.validInputs[tok[:strings.LastIndexByte(tok, '.')]] = true
	}
	return fx
}

// seeds are the rejected inputs of the table tests, rebuilt with the fuzz keys.
func (fx *fuzzFixture) seeds(tb testing.TB) []string {
	rs, es := fx.keys["RS256"], fx.keys["ES256"]
	sign := func(k *SigningKey, alg, hdr, payload string) string {
		if alg == "HS256" { // HMAC keyed with the published public JWKS bytes
			jwks, _ := PublicJWKS([]*SigningKey{k})
			return signRaw(tb, alg, jwks, hdr, payload)
		}
		return signRaw(tb, alg, k.priv, hdr, payload)
	}
	valid := fx.valid[0]
	p := strings.Split(valid, ".")
	esTok := fx.valid[1]
	esSig := sigOf(tb, esTok)
	out := append([]string{}, fx.valid...)
	out = append(out,
		"", ".", "..", "...", strings.Repeat(".", 5000), strings.Repeat("a", 9000),
		p[0]+"."+p[1], valid+"."+p[2], valid+"=", strings.NewReplacer("-", "+", "_", "/").Replace(valid),
		fmt.Sprintf(`{"protected":%q,"payload":%q,"signature":%q}`, p[0], p[1], p[2]),
		b64([]byte(`{"alg":"none"}`))+"."+p[1]+".",
		b64([]byte(`{"alg":"NONE","kid":"fz-rs"}`))+"."+p[1]+".AAAA",
		sign(rs, "HS256", `{"alg":"HS256","kid":"fz-rs"}`, testClaims),
		sign(rs, "PS256", `{"alg":"PS256","kid":"fz-rs"}`, testClaims),
		sign(rs, "RS256", `{"alg":"RS256","kid":"fz-rs","crit":["exp"]}`, testClaims),
		sign(rs, "RS256", `{"alg":"RS256","kid":"fz-rs","jku":"http://127.0.0.1:1/"}`, testClaims),
		sign(rs, "RS256", `{"alg":"RS256","kid":"../x"}`, testClaims),
		sign(rs, "RS256", `{"alg":"RS256","kid":1}`, testClaims),
		sign(rs, "RS256", `{"alg":"RS256","alg":"RS256","kid":"fz-rs"}`, testClaims),
		sign(rs, "RS256", `{"alg":"RS256","kid":"fz-rs"}`, `{"sub":"a","sub":"b"}`),
		sign(rs, "RS256", `{"alg":"RS256","kid":"fz-rs"}`, `{"sub":"`+"\xff"+`"}`),
		sign(rs, "RS256", `{"alg":"RS256","kid":"fz-rs"}`, `{"a":`+strings.Repeat("[", 2000)+strings.Repeat("]", 2000)+`}`),
		sign(rs, "RS256", `{"alg":"RS256","kid":"fz-rs"}`, `{"exp":1e309}`),
		sign(rs, "RS256", `{"alg":"RS256","kid":"fz-rs"}`, `{"exp":"2030-01-01T00:00:00Z"}`),
		sign(rs, "RS256", `{"alg":"RS256","kid":"fz-rs"}`, `{"aud":[1]}`),
		withSig(esTok, esSig[1:]), withSig(esTok, append([]byte{0}, esSig...)), withSig(esTok, make([]byte, 64)),
	)
	// Legitimately signed tokens that Verify accepts although the caller
	// must reject their claims (exp 0) or that rely on the no-kid rule.
	for _, extra := range []string{
		sign(rs, "RS256", `{"alg":"RS256"}`, testClaims),
		sign(rs, "RS256", `{"alg":"RS256","kid":"fz-rs"}`, `{"exp":0}`),
		sign(es, "ES256", `{"alg":"ES256","kid":"fz-es"}`, `{"exp":-1,"aud":[]}`),
	} {
		fx.validInputs[extra[:strings.LastIndexByte(extra, '.')]] = true
		fx.valid = append(fx.valid, extra)
		out = append(out, extra)
	}
	// Every seed behaves as intended before fuzzing starts.
	for _, s := range out {
		_, err := parseVerify(s, defaults.MaxTokenBytes, fx.ks, VerificationAlgorithms())
		isValid := slices.Contains(fx.valid, s)
		if (err == nil) != isValid {
			tb.Fatalf("seed %.60q: err=%v, seeded as valid=%v", s, err, isValid)
		}
	}
	return out
}

func FuzzParseVerify(f *testing.F) {
	fx := newFuzzFixture(f)
	for _, s := range fx.seeds(f) {
		f.Add(s)
	}
	allowed := VerificationAlgorithms()
	f.Fuzz(func(t *testing.T, tok string) {
		u, err := Parse(tok, defaults.MaxTokenBytes)
		if err == nil {
			var c *Claims
			c, err = u.Verify(fx.ks, allowed)
			if err == nil {
				if c == nil || !fx.validInputs[tok[:strings.LastIndexByte(tok, '.')]] {
					t.Fatalf("verified a token that was not seeded as valid: %q", tok)
				}
				return
			}
		}
		var je *joseError
		if !errors.As(err, &je) {
			t.Fatalf("error of foreign type %T", err)
		}
		checkSafeText(t, err)
	})
}

func FuzzParseKeySet(f *testing.F) {
	fx := newFuzzFixture(f)
	doc, err := PublicJWKS([]*SigningKey{fx.keys["RS256"], fx.keys["ES256"], fx.keys["EdDSA"]})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(doc)
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AAAA"},{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}],"keys":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ks, dropped, err := ParseKeySet(data)
		if err != nil {
			if ks != nil || !errors.Is(err, ErrNoUsableKeys) {
				t.Fatalf("error %v with set %v", err, ks)
			}
			checkSafeText(t, err)
			return
		}
		if ks.Len() == 0 || ks.Len() > MaxKeySetKeys {
			t.Fatalf("Len = %d", ks.Len())
		}
		for _, k := range ks.keys {
			if k.pub == nil || (k.alg != "" && !k.fits(k.alg)) {
				t.Fatalf("unusable key kept: %+v", k)
			}
		}
		_ = dropped
	})
}
