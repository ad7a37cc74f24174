package jose

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// signRaw returns b64(hdr).b64(payload).b64(sig) where sig is a legitimate
// signature by jwx's signer for alg with key over exactly those bytes. It lets
// tests build tokens whose only defect is the one under test.
func signRaw(t testing.TB, alg string, key any, hdr, payload string) string {
	t.Helper()
	input := b64([]byte(hdr)) + "." + b64([]byte(payload))
	s, err := jws.NewSigner(jwa.SignatureAlgorithm(alg))
	if err != nil {
		t.Fatalf("NewSigner(%s): %v", alg, err)
	}
	sig, err := s.Sign([]byte(input), key)
	if err != nil {
		t.Fatalf("Sign(%s): %v", alg, err)
	}
	return input + "." + b64(sig)
}

// withSig replaces the signature segment of tok.
func withSig(tok string, sig []byte) string {
	return tok[:strings.LastIndexByte(tok, '.')+1] + b64(sig)
}

func sigOf(t testing.TB, tok string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(tok[strings.LastIndexByte(tok, '.')+1:])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const testClaims = `{"iss":"https://idp.example","sub":"alice-subject","aud":"api-audience","exp":1900000000,"iat":1800000000,"jti":"jti-1"}`

func keySetOf(t testing.TB, keys ...*SigningKey) *KeySet {
	t.Helper()
	doc, err := PublicJWKS(keys)
	if err != nil {
		t.Fatal(err)
	}
	ks, dropped, err := ParseKeySet(doc)
	if err != nil || len(dropped) != 0 {
		t.Fatalf("ParseKeySet: %v %v", err, dropped)
	}
	return ks
}

// jwksWithout returns a JWKS for keys with the named members removed from every JWK.
func jwksWithout(t testing.TB, keys []*SigningKey, members ...string) []byte {
	t.Helper()
	doc, err := PublicJWKS(keys)
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		for _, m := range members {
			delete(k, m)
		}
	}
	return mustJSON(t, set)
}

var allSentinels = []error{ErrMalformed, ErrUnsupportedAlg, ErrUnknownKey, ErrBadSignature, ErrForbiddenHeader, ErrNoUsableKeys}

// jwxTextMarkers appear in jwx / encoding/json / crypto error texts and must
// never leak through our Error().
var jwxTextMarkers = []string{"jws", "jwk", "jwt", "failed to", "invalid character", "crypto/", "%!", "verification error", "unexpected end"}

// checkErr asserts err wraps want, that its text is one of our fixed texts
// (prefix = a sentinel's text) and that it contains none of the secrets
// (token, kid, claim values) nor library error text.
func checkErr(t testing.TB, err, want error, secrets ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %v, got nil", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("want errors.Is(%v), got %v", want, err)
	}
	checkSafeText(t, err, secrets...)
}

func checkSafeText(t testing.TB, err error, secrets ...string) {
	t.Helper()
	msg := err.Error()
	prefixed := false
	for _, s := range allSentinels {
		if strings.HasPrefix(msg, s.Error()) {
			prefixed = true
		}
	}
	if !prefixed {
		t.Fatalf("error text %q does not start with a sentinel text", msg)
	}
	for _, s := range secrets {
		if len(s) >= 3 && strings.Contains(msg, s) {
			t.Fatalf("error text %q leaks %q", msg, s)
		}
	}
	for _, m := range jwxTextMarkers {
		if strings.Contains(strings.ToLower(msg), m) {
			t.Fatalf("error text %q contains library text %q", msg, m)
		}
	}
}

// parseVerify runs Parse then Verify.
func parseVerify(tok string, maxBytes int, ks *KeySet, allowed []string) (*Claims, error) {
	u, err := Parse(tok, maxBytes)
	if err != nil {
		return nil, err
	}
	return u.Verify(ks, allowed)
}
