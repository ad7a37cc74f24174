package verify

import (
	"testing"

	"github.com/tokengate/tokengate/internal/introspect"
)

// TestIntrospectionCnf: an introspection answer's cnf (RFC 7662 §2.2 carries any JWT claim)
// binds an opaque token as a JWT's binds it (RFC 8705 §3.2, RFC 9449 §6.2), whatever
// KeepClaims keeps, and the binding survives the answer cache.
func TestIntrospectionCnf(t *testing.T) {
	a := newAnswers(t)
	a.byTok = map[string]string{
		"dpop":    `{"active":true,"sub":"bob","cnf":{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}`,
		"mtls":    `{"active":true,"sub":"bob","cnf":{"x5t#S256":"bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}`,
		"both":    `{"active":true,"sub":"bob","cnf":{"jkt":"j","x5t#S256":"x"}}`,
		"unknown": `{"active":true,"sub":"bob","cnf":{"jwk":{"kty":"EC"}}}`,
		"odd":     `{"active":true,"sub":"bob","cnf":"not an object"}`,
		"bearer":  `{"active":true,"sub":"bob"}`,
	}
	c, err := introspect.New(introspect.Config{Provider: "curity", URL: a.srv.URL, ClientID: "gw", Auth: secretAuth{"gw", "s"}})
	if err != nil {
		t.Fatal(err)
	}
	// KeepClaims without cnf: the binding must not depend on a route reading the claim.
	v, err := New(t.Context(), Options{KeepClaims: []string{"tenant"},
		Providers: []Provider{{Name: "curity", Introspection: c}}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tests := []struct {
		token string
		want  *Confirmation // nil: no cnf
	}{
		{"dpop", &Confirmation{JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}},
		{"mtls", &Confirmation{X5T: "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}},
		{"both", &Confirmation{JKT: "j", X5T: "x"}},
		// A confirmation method tokengate does not check: present but empty, which nothing
		// satisfies (RFC 7800 §3.1), never dropped to a bearer token.
		{"unknown", &Confirmation{}},
		{"odd", &Confirmation{}},
		{"bearer", nil},
	}
	for _, tt := range tests {
		t.Run(tt.token, func(t *testing.T) {
			for round := 0; round < 2; round++ { // the second from the answer cache
				p, err := v.Verify(t.Context(), tt.token, []string{"curity"})
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case tt.want == nil && p.Cnf != nil:
					t.Fatalf("round %d: cnf %+v, want none", round, *p.Cnf)
				case tt.want != nil && (p.Cnf == nil || *p.Cnf != *tt.want):
					t.Fatalf("round %d: cnf %+v, want %+v", round, p.Cnf, *tt.want)
				}
				if _, kept := p.Claims["cnf"]; kept {
					t.Fatalf("cnf kept as a claim although KeepClaims does not name it")
				}
			}
		})
	}
	if n := a.calls.Load(); n != int64(len(tests)) {
		t.Fatalf("%d introspection calls for %d tokens: the answers were not cached", n, len(tests))
	}
}
