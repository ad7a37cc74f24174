package jose

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// costClaims is a typical access token's claim set (RFC 9068 §2.2).
var costClaims = map[string]any{
	"iss": "https://idp.example.com/", "sub": "alice", "aud": []string{"api://gateway"},
	"exp": 1900000000, "iat": 1800000000, "jti": "0123456789abcdef", "scope": "read write",
	"client_id": "my-client",
}

// BenchmarkVerifyParts splits an uncached verification (issue 11): the floor (crypto's own
// verify of the token's signature, as the load harness measures it), jwx's verifier on the
// same bytes, Parse alone, and Parse + Verify. What Parse + Verify costs above the floor is
// ours.
func BenchmarkVerifyParts(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256"} {
		k := testKey(b, alg)
		ks := keySetOf(b, k)
		tok, err := k.Sign(costClaims, "at+jwt")
		if err != nil {
			b.Fatal(err)
		}
		dot := strings.LastIndexByte(tok, '.')
		input := []byte(tok[:dot])
		sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
		if err != nil {
			b.Fatal(err)
		}
		pub := ks.keys[0].pub
		b.Run(alg+"/crypto floor", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sum := sha256.Sum256(input)
				var ok bool
				switch p := pub.(type) {
				case *rsa.PublicKey:
					ok = rsa.VerifyPKCS1v15(p, crypto.SHA256, sum[:], sig) == nil
				case *ecdsa.PublicKey:
					ok = verifyES256(p, sum[:], sig)
				}
				if !ok {
					b.Fatal("signature does not verify")
				}
			}
		})
		b.Run(alg+"/jwx verifier", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v, err := jws.NewVerifier(jwa.SignatureAlgorithm(alg))
				if err != nil {
					b.Fatal(err)
				}
				if err := v.Verify(input, sig, pub); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/Parse", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(tok, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/Parse+Verify", func(b *testing.B) {
			allowed := []string{alg}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parseVerify(tok, 0, ks, allowed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// verifyES256 checks an R||S signature (RFC 7518 §3.4) with crypto/ecdsa directly.
func verifyES256(pub *ecdsa.PublicKey, digest, sig []byte) bool {
	der := []byte{0x30, 0}
	for _, half := range [][]byte{sig[:32], sig[32:]} {
		for len(half) > 1 && half[0] == 0 && half[1] < 0x80 {
			half = half[1:]
		}
		if half[0] >= 0x80 {
			half = append([]byte{0}, half...)
		}
		der = append(der, 0x02, byte(len(half)))
		der = append(der, half...)
	}
	der[1] = byte(len(der) - 2)
	return ecdsa.VerifyASN1(pub, digest, der)
}

// TestParseVerifyAllocations is the allocation budget of an uncached RS256 verification
// (issue 11: 261 before the single-pass JSON parser and the direct jwx verifier call):
// allocations are deterministic, unlike time.
func TestParseVerifyAllocations(t *testing.T) {
	k := testKey(t, "RS256")
	ks := keySetOf(t, k)
	tok, err := k.Sign(costClaims, "at+jwt")
	if err != nil {
		t.Fatal(err)
	}
	allowed := []string{"RS256"}
	const budget = 40
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := parseVerify(tok, 0, ks, allowed); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > budget {
		t.Fatalf("Parse + Verify of an RS256 token allocated %v times, budget %d", allocs, budget)
	}
}

// TestEscapedStringsCostLinearMemory: parsing is linear in the token's size, however its
// strings are escaped. Anyone can send a token (it is parsed before any key or signature is
// looked at), so a claim set of many short escaped strings at the size limit must cost about
// what its bytes do: each decoded string once sized its buffer to the rest of the whole input,
// which made such a token cost memory quadratic in its size (4 MB at 8 KiB, 260 MB at 64 KiB).
func TestEscapedStringsCostLinearMemory(t *testing.T) {
	const limit = 64 << 10
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","typ":"JWT"}`))
	var payload strings.Builder
	payload.WriteString(`{"a":[`)
	for payload.Len() < (limit-len(header)-100)*3/4-10 {
		payload.WriteString(`"\n",`)
	}
	payload.WriteString(`"\n"]}`)
	tok := header + "." + base64.RawURLEncoding.EncodeToString([]byte(payload.String())) + "." +
		base64.RawURLEncoding.EncodeToString(make([]byte, 64))
	if len(tok) > limit {
		t.Fatalf("test token is %d bytes, over the %d limit", len(tok), limit)
	}
	if _, err := Parse(tok, limit); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	res := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = Parse(tok, limit)
		}
	})
	if per, bound := res.AllocedBytesPerOp(), int64(16*len(tok)); per > bound {
		t.Fatalf("Parse of a %d-byte token of escaped strings allocates %d bytes, want at most %d (linear)", len(tok), per, bound)
	}
}
