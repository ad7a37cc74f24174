package jose

import (
	"slices"
	"testing"
)

// TestAlgorithmLists: the ordered lists name exactly the algorithms verifyAlgs marks, so the
// table stays the one owner of which algorithm may do what.
func TestAlgorithmLists(t *testing.T) {
	var sign, def, verify []string
	for alg, info := range verifyAlgs {
		verify = append(verify, alg)
		if info.sign {
			sign = append(sign, alg)
		}
		if info.def {
			def = append(def, alg)
		}
	}
	for _, tt := range []struct {
		name       string
		got, table []string
	}{
		{"SigningAlgorithms", SigningAlgorithms(), sign},
		{"VerificationAlgorithms", VerificationAlgorithms(), verify},
		{"DefaultAlgorithms", DefaultAlgorithms(), def},
	} {
		got := slices.Sorted(slices.Values(tt.got))
		if want := slices.Sorted(slices.Values(tt.table)); !slices.Equal(got, want) {
			t.Errorf("%s = %v, the table says %v", tt.name, got, want)
		}
		if len(slices.Compact(got)) != len(tt.got) {
			t.Errorf("%s has duplicates: %v", tt.name, tt.got)
		}
	}
	if got := SigningAlgorithmList(); got != "ES256, ES384, RS256, RS384, RS512, PS256, EdDSA" {
		t.Errorf("SigningAlgorithmList = %q", got)
	}
	for _, alg := range []string{"HS256", "none", "", "ES512", "PS384"} {
		if IsSigningAlgorithm(alg) {
			t.Errorf("IsSigningAlgorithm(%q)", alg)
		}
	}
	// The returned slices are copies.
	s := SigningAlgorithms()
	s[0] = "none"
	if SigningAlgorithms()[0] == "none" {
		t.Fatal("SigningAlgorithms shares its backing array")
	}
}

func TestReservedClaims(t *testing.T) {
	want := []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope"}
	if got := ReservedClaims(); !slices.Equal(got, want) {
		t.Fatalf("ReservedClaims = %v", got)
	}
	for _, c := range want {
		if !IsReservedClaim(c) {
			t.Errorf("IsReservedClaim(%q) = false", c)
		}
	}
	for _, c := range []string{"active", "tags", "Sub", ""} {
		if IsReservedClaim(c) {
			t.Errorf("IsReservedClaim(%q) = true", c)
		}
	}
}
