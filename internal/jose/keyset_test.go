package jose

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// jwkJSON renders raw as a JWK object with extra members set (nil value deletes).
func jwkJSON(t testing.TB, raw any, extra map[string]any) map[string]any {
	t.Helper()
	k, err := jwk.FromRaw(raw)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(mustJSON(t, k), &m); err != nil {
		t.Fatal(err)
	}
	for n, v := range extra {
		if v == nil {
			delete(m, n)
		} else {
			m[n] = v
		}
	}
	return m
}

// RFC 7517 §4, RFC 8725 §3.1 (docs/security.md#jose-hardening): unusable keys are dropped, each with a reason that
// carries neither key material nor kid; usable keys survive.
func TestParseKeySetDropsUnusableKeys(t *testing.T) {
	rs := testKey(t, "RS256")
	es := testKey(t, "ES256")
	ed := testKey(t, "EdDSA")
	rsPub := rs.priv.Public().(*rsa.PublicKey)
	ecPub := es.priv.Public().(*ecdsa.PublicKey)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// Off-curve point: y+1 (still a valid-length coordinate).
	offCurve := jwkJSON(t, ecPub, map[string]any{"kid": "SECRET-KID-offcurve", "alg": "ES256"})
	//lint:ignore SA1019 building an off-curve point on purpose needs the raw coordinate
	y := new(big.Int).Add(ecPub.Y, big.NewInt(1)).FillBytes(make([]byte, 32))
	offCurve["y"] = b64(y)
	x25519 := map[string]any{"kty": "OKP", "crv": "X25519", "x": b64(make([]byte, 32)), "kid": "SECRET-KID-x25519"}
	ed448 := map[string]any{"kty": "OKP", "crv": "Ed448", "x": b64(make([]byte, 57)), "kid": "SECRET-KID-ed448"}

	good := []map[string]any{
		jwkJSON(t, rsPub, map[string]any{"kid": "good-rs", "alg": "RS256", "use": "sig"}),
		jwkJSON(t, ecPub, map[string]any{"kid": "good-es", "key_ops": []string{"verify"}}), // no alg: allowed
		jwkJSON(t, ed.priv.Public(), map[string]any{"kid": "good-ed", "alg": "EdDSA"}),
		jwkJSON(t, rsPub, map[string]any{"alg": "PS256"}), // no kid: allowed
	}
	bad := []struct {
		name   string
		key    any
		reason string
	}{
		{"RSA 1024", jwkJSON(t, &small.PublicKey, map[string]any{"kid": "SECRET-KID-small", "alg": "RS256"}), "shorter than 2048"},
		{"RSA private (d)", jwkJSON(t, rs.priv, map[string]any{"kid": "SECRET-KID-priv"}), "private"},
		{"EC private (d)", jwkJSON(t, es.priv, map[string]any{"kid": "SECRET-KID-ecpriv"}), "private"},
		{"oct", map[string]any{"kty": "oct", "k": b64([]byte("0123456789abcdef0123456789abcdef")), "kid": "SECRET-KID-oct", "alg": "HS256"}, "oct"},
		{"off-curve EC", offCurve, "curve"},
		{"P-224", map[string]any{"kty": "EC", "crv": "P-224", "x": b64(p224.X.Bytes()), "y": b64(p224.Y.Bytes()), "kid": "SECRET-KID-p224"}, "invalid key"},
		{"X25519", x25519, "unsupported"},
		{"Ed448", ed448, "invalid key"},
		{"use enc", jwkJSON(t, rsPub, map[string]any{"kid": "SECRET-KID-enc", "use": "enc"}), "use"},
		{"use number", jwkJSON(t, rsPub, map[string]any{"kid": "SECRET-KID-use1", "use": 1}), "use"},
		{"key_ops encrypt", jwkJSON(t, rsPub, map[string]any{"kid": "SECRET-KID-ops", "key_ops": []string{"encrypt"}}), "key_ops"},
		{"alg none", jwkJSON(t, rsPub, map[string]any{"kid": "SECRET-KID-none", "alg": "none"}), "none"},
		{"alg HS256 on RSA", jwkJSON(t, rsPub, map[string]any{"kid": "SECRET-KID-hs", "alg": "HS256"}), "HMAC"},
		{"alg RSA-OAEP", jwkJSON(t, rsPub, map[string]any{"kid": "SECRET-KID-oaep", "alg": "RSA-OAEP"}), "alg"},
		{"alg ES256 on RSA", jwkJSON(t, rsPub, map[string]any{"kid": "SECRET-KID-esrsa", "alg": "ES256"}), "key type"},
		{"alg ES384 on P-256", jwkJSON(t, ecPub, map[string]any{"kid": "SECRET-KID-es384", "alg": "ES384"}), "curve"},
		{"alg EdDSA on RSA", jwkJSON(t, rsPub, map[string]any{"kid": "SECRET-KID-edrsa", "alg": "EdDSA"}), "key type"},
		{"kid number", jwkJSON(t, rsPub, map[string]any{"kid": 7}), "kid"},
		{"kid too long", jwkJSON(t, rsPub, map[string]any{"kid": strings.Repeat("K", 300)}), "kid"},
		{"duplicate kid", jwkJSON(t, ecPub, map[string]any{"kid": "good-rs", "alg": "ES256"}), "duplicate kid"},
		{"no kty", map[string]any{"n": "AQAB", "e": "AQAB", "kid": "SECRET-KID-nokty"}, "key type"},
		{"not an object", 42, "not a valid JWK"},
		{"RSA bad exponent", jwkJSON(t, rsPub, map[string]any{"kid": "SECRET-KID-e", "e": "Ag"}), "invalid RSA"},
		{"RSA 9000 bits", map[string]any{"kty": "RSA", "n": b64(new(big.Int).SetBit(new(big.Int).Lsh(big.NewInt(1), 8999), 0, 1).Bytes()),
			"e": "AQAB", "kid": "SECRET-KID-huge"}, "longer than 8192"},
		{"RSA garbage n", map[string]any{"kty": "RSA", "n": "!!", "e": "AQAB", "kid": "SECRET-KID-garbage"}, "invalid key"},
	}
	keys := []any{}
	for _, g := range good {
		keys = append(keys, g)
	}
	for _, b := range bad {
		keys = append(keys, b.key)
	}
	doc := mustJSON(t, map[string]any{"keys": keys})
	// A duplicate member name inside one key drops that key only.
	doc = []byte(strings.Replace(string(doc), `{"keys":[`, `{"keys":[{"kty":"RSA","kty":"RSA","kid":"SECRET-KID-dupmember"},`, 1))

	ks, dropped, err := ParseKeySet(doc)
	if err != nil {
		t.Fatalf("ParseKeySet: %v", err)
	}
	if ks.Len() != len(good) {
		t.Fatalf("Len = %d, want %d; dropped %v", ks.Len(), len(good), dropped)
	}
	t.Logf("dropped: %q", dropped)
	if len(dropped) != len(bad)+1 {
		t.Fatalf("dropped %d reasons, want %d: %v", len(dropped), len(bad)+1, dropped)
	}
	if !strings.Contains(dropped[0], "key 0:") || !strings.Contains(dropped[0], "duplicate JSON member") {
		t.Errorf("dup-member reason = %q", dropped[0])
	}
	for i, b := range bad {
		r := dropped[i+1]
		if !strings.Contains(r, fmt.Sprintf("key %d:", i+1+len(good))) || !strings.Contains(r, b.reason) {
			t.Errorf("%s: reason %q, want index %d and %q", b.name, r, i+1+len(good), b.reason)
		}
	}
	for _, r := range dropped {
		if strings.Contains(r, "SECRET-KID") || strings.Contains(r, "KKKK") || strings.Contains(r, "good-") {
			t.Errorf("reason leaks a kid: %q", r)
		}
	}
	if got := strings.Join(ks.KeyIDs(), ","); got != "good-rs,good-es,good-ed" {
		t.Errorf("KeyIDs = %s", got)
	}
	for _, kid := range []string{"SECRET-KID-small", "SECRET-KID-priv", "SECRET-KID-oct", "SECRET-KID-offcurve", "SECRET-KID-enc"} {
		if ks.Has(kid) {
			t.Errorf("dropped key %s is still usable", kid)
		}
	}
	// The duplicate kid kept the FIRST key (RSA): an RS256 token for good-rs verifies,
	// an ES256 token naming good-rs does not.
	rsTok := signRaw(t, "RS256", rs.priv, `{"alg":"RS256","kid":"good-rs"}`, testClaims)
	if _, err := parseVerify(rsTok, 0, ks, []string{"RS256", "ES256"}); err != nil {
		t.Errorf("first key of a duplicate kid must stay: %v", err)
	}
	esTok := signRaw(t, "ES256", es.priv, `{"alg":"ES256","kid":"good-rs"}`, testClaims)
	if _, err := parseVerify(esTok, 0, ks, []string{"RS256", "ES256"}); !errors.Is(err, ErrUnsupportedAlg) {
		t.Errorf("later duplicate kid must not serve: %v", err)
	}
	// A token signed by a dropped key (RSA-1024 with its kid) finds no key.
	smallTok := signRaw(t, "RS256", small, `{"alg":"RS256","kid":"SECRET-KID-small"}`, testClaims)
	_, err = parseVerify(smallTok, 0, ks, []string{"RS256"})
	checkErr(t, err, ErrUnknownKey, "SECRET-KID-small")
	// The "no kid, exactly one fits" rule sees the kid-less PS256 key only for PS256.
	psTok := signRaw(t, "PS256", rs.priv, `{"alg":"PS256"}`, testClaims)
	if _, err := parseVerify(psTok, 0, ks, []string{"PS256"}); err != nil {
		t.Errorf("kid-less PS256 key: %v", err)
	}

	// Each bad key alone: the whole set is unusable.
	for _, b := range bad {
		if b.name == "duplicate kid" {
			continue // alone it is not a duplicate
		}
		t.Run("alone/"+b.name, func(t *testing.T) {
			_, dropped, err := ParseKeySet(mustJSON(t, map[string]any{"keys": []any{b.key}}))
			checkErr(t, err, ErrNoUsableKeys, "SECRET-KID")
			if len(dropped) != 1 {
				t.Fatalf("dropped = %v", dropped)
			}
		})
	}
}

func TestParseKeySetDocuments(t *testing.T) {
	rs := testKey(t, "RS256")
	one := string(jwksWithout(t, []*SigningKey{rs}))
	oneKey := one[len(`{"keys":[`) : len(one)-2]
	cases := []struct {
		name      string
		doc       string
		malformed bool
	}{
		{"empty input", "", true},
		{"null", "null", true},
		{"array", "[" + oneKey + "]", true},
		{"single JWK, not a set", oneKey, true},
		{"keys object", `{"keys":{}}`, true},
		{"keys null", `{"keys":null}`, true},
		{"no keys member", `{"other":[]}`, true},
		{"duplicate keys member", `{"keys":[],"keys":[` + oneKey + `]}`, true},
		{"trailing data", one + "{}", true},
		{"invalid UTF-8", `{"keys":[],"x":"` + "\xff" + `"}`, true},
		{"truncated", one[:len(one)-3], true},
		{"too large", `{"keys":[],"x":"` + strings.Repeat("a", MaxKeySetBytes) + `"}`, true},
		{"empty keys", `{"keys":[]}`, false},
		{"only unusable", `{"keys":[{"kty":"oct","k":"AAAA"}]}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ks, _, err := ParseKeySet([]byte(tc.doc))
			if ks != nil {
				t.Fatal("a KeySet was returned with an error")
			}
			checkErr(t, err, ErrNoUsableKeys)
			if errors.Is(err, ErrMalformed) != tc.malformed {
				t.Fatalf("errors.Is(ErrMalformed) = %v, want %v", !tc.malformed, tc.malformed)
			}
		})
	}
	// Extra members are ignored, whitespace is fine.
	if ks, _, err := ParseKeySet([]byte(" {\"x\":{\"y\":[1]},\n\"keys\":[" + oneKey + "]} \n")); err != nil || ks.Len() != 1 {
		t.Fatalf("extra members: %v", err)
	}
}

func TestParseKeySetCapsKeyCount(t *testing.T) {
	rs := testKey(t, "RS256")
	pub := jwkJSON(t, rs.priv.Public(), map[string]any{"alg": "RS256"}) // no kid: copies are not duplicates
	keys := make([]any, 150)
	for i := range keys {
		keys[i] = pub
	}
	ks, dropped, err := ParseKeySet(mustJSON(t, map[string]any{"keys": keys}))
	if err != nil {
		t.Fatal(err)
	}
	if ks.Len() != MaxKeySetKeys {
		t.Fatalf("Len = %d, want %d", ks.Len(), MaxKeySetKeys)
	}
	if len(dropped) != 1 || !strings.Contains(dropped[0], "more than 100 keys") {
		t.Fatalf("dropped = %v", dropped)
	}
	// 100 identical kid-less keys all fit RS256: a kid-less token is ambiguous.
	tok := signRaw(t, "RS256", rs.priv, `{"alg":"RS256"}`, testClaims)
	_, err = parseVerify(tok, 0, ks, []string{"RS256"})
	checkErr(t, err, ErrUnknownKey)
}

var _ = ed25519.PublicKeySize
