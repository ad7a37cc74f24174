package jose

import (
	"fmt"
	"strings"
	"testing"
)

func BenchmarkParseVerify(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA", "PS256"} {
		b.Run(alg, func(b *testing.B) {
			k := testKey(b, alg)
			ks := keySetOf(b, k)
			tok, err := k.Sign(map[string]any{
				"iss": "https://idp.example.com/", "sub": "alice", "aud": []string{"api://gateway"},
				"exp": 1900000000, "iat": 1800000000, "jti": "0123456789abcdef", "scope": "read write",
				"client_id": "my-client",
			}, "at+jwt")
			if err != nil {
				b.Fatal(err)
			}
			allowed := []string{alg}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := parseVerify(tok, 0, ks, allowed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseOnly measures the structural checks alone (no signature).
func BenchmarkParseOnly(b *testing.B) {
	k := testKey(b, "ES256")
	tok, _ := k.Sign(map[string]any{"iss": "https://idp.example.com/", "sub": "alice", "exp": 1900000000}, "at+jwt")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(tok, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRejectHostile(b *testing.B) {
	for name, tok := range map[string]string{
		"100k dots":    strings.Repeat(".", 100_000),
		"10 KB token":  strings.Repeat("a", 10*1024),
		"deep nesting": b64([]byte(`{"alg":"RS256"}`)) + "." + b64([]byte(`{"a":`+strings.Repeat("[", 3000)+strings.Repeat("]", 3000)+`}`)) + ".AAAA",
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(tok, 1<<20); err == nil {
					b.Fatal(fmt.Sprint("accepted ", name))
				}
			}
		})
	}
}
