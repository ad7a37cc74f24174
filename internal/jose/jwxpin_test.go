package jose

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// TestJWXPins pins the jwx v2 behaviours (docs/security.md#jose-hardening) that this
// package works around, as observed in the version in go.sum. If a jwx
// upgrade changes one of them this test fails: re-read the note, keep our
// guard (they stay correct either way) and update the pin. Each subtest states
// the behaviour as "jwx does X".
func TestJWXPins(t *testing.T) {
	rs := testKey(t, "RS256")
	es := testKey(t, "ES256")
	rsPub := rs.priv.Public()

	t.Run("A: WithKeySet verifies with the JWK alg, ignoring the header alg", func(t *testing.T) {
		// Header says PS256, signature is RS256, JWK says RS256.
		tok := signRaw(t, "RS256", rs.priv, `{"alg":"PS256","kid":"kid-rs256"}`, testClaims)
		set := jwk.NewSet()
		k, _ := jwk.FromRaw(rsPub)
		_ = k.Set(jwk.KeyIDKey, "kid-rs256")
		_ = k.Set(jwk.AlgorithmKey, jwa.RS256)
		_ = set.AddKey(k)
		if _, err := jws.Verify([]byte(tok), jws.WithKeySet(set)); err != nil {
			t.Fatalf("jwx now checks header alg against the key alg (%v): guard A may be relaxed", err)
		}
	})

	t.Run("B: WithKeySet silently skips keys without alg", func(t *testing.T) {
		tok := signRaw(t, "RS256", rs.priv, `{"alg":"RS256","kid":"kid-rs256"}`, testClaims)
		set := jwk.NewSet()
		k, _ := jwk.FromRaw(rsPub)
		_ = k.Set(jwk.KeyIDKey, "kid-rs256")
		_ = set.AddKey(k)
		if _, err := jws.Verify([]byte(tok), jws.WithKeySet(set)); err == nil {
			t.Fatal("jwx now infers the alg of alg-less keys by default")
		}
	})

	t.Run("C: exp 0 counts as absent, WithRequiredClaim checks presence only, numeric strings accepted", func(t *testing.T) {
		for _, claims := range []string{`{"exp":0}`, `{"exp":"0"}`} {
			tok, err := jwt.ParseInsecure([]byte(b64([]byte(`{"alg":"RS256"}`)) + "." + b64([]byte(claims)) + ".AAAA"))
			if err != nil {
				t.Fatalf("%s: jwx now refuses it at parse time: %v", claims, err)
			}
			if err := jwt.Validate(tok, jwt.WithRequiredClaim("exp"), jwt.WithClock(jwt.ClockFunc(time.Now))); err != nil {
				t.Fatalf("%s: jwx now rejects exp 0 as expired: %v", claims, err)
			}
		}
		tok, err := jwt.ParseInsecure([]byte(b64([]byte(`{"alg":"RS256"}`)) + "." + b64([]byte(`{"exp":"1900000000"}`)) + ".AAAA"))
		if err != nil || tok.Expiration().Unix() != 1900000000 {
			t.Fatalf("jwx no longer reads a numeric string as a NumericDate: %v", err)
		}
	})

	t.Run("D: JSON serialization is accepted unless WithCompact", func(t *testing.T) {
		compact := signRaw(t, "RS256", rs.priv, `{"alg":"RS256"}`, testClaims)
		p := strings.Split(compact, ".")
		flat := fmt.Sprintf(`{"protected":%q,"payload":%q,"signature":%q}`, p[0], p[1], p[2])
		if _, err := jws.Verify([]byte(flat), jws.WithKey(jwa.RS256, rsPub)); err != nil {
			t.Fatalf("jwx no longer accepts JSON serialization by default: %v", err)
		}
		// We rely on WithCompact as a second line of defence.
		if _, err := jws.Verify([]byte(flat), jws.WithCompact(), jws.WithKey(jwa.RS256, rsPub)); err == nil {
			t.Fatal("jws.WithCompact() no longer restricts jws.Verify to compact serialization")
		}
	})

	t.Run("E: base64 is lenient (padding, std alphabet)", func(t *testing.T) {
		var tok string
		for i := 0; !strings.ContainsAny(tok, "-_"); i++ {
			tok = signRaw(t, "RS256", rs.priv, `{"alg":"RS256"}`, fmt.Sprintf(`{"n":%d}`, i))
		}
		p := strings.Split(tok, ".")
		for name, v := range map[string]string{
			"std":    strings.NewReplacer("-", "+", "_", "/").Replace(tok),
			"padded": p[0] + "." + p[1] + "." + p[2] + strings.Repeat("=", (4-len(p[2])%4)%4),
		} {
			if _, err := jws.Verify([]byte(v), jws.WithKey(jwa.RS256, rsPub)); err != nil {
				t.Errorf("%s: jwx no longer accepts this spelling: %v", name, err)
			}
		}
	})

	t.Run("F: SplitCompact in this version uses bytes.Cut (bounded)", func(t *testing.T) {
		dots := []byte(strings.Repeat(".", 100_000))
		allocs := testing.AllocsPerRun(5, func() { _, _, _, _ = jws.SplitCompact(dots) })
		if allocs > 5 {
			t.Fatalf("jws.SplitCompact allocates %v times on 100k dots: the bytes.Split issue is back", allocs)
		}
	})

	t.Run("G: crit is not enforced", func(t *testing.T) {
		tok := signRaw(t, "RS256", rs.priv, `{"alg":"RS256","crit":["urn:example:unknown"],"urn:example:unknown":1}`, testClaims)
		if _, err := jws.Verify([]byte(tok), jws.WithKey(jwa.RS256, rsPub)); err != nil {
			t.Fatalf("jwx now enforces crit: %v", err)
		}
	})

	t.Run("jwk.ParseKey accepts an off-curve EC point", func(t *testing.T) {
		pub := es.priv.Public().(*ecdsa.PublicKey)
		m := jwkJSON(t, pub, nil)
		//lint:ignore SA1019 building an off-curve point on purpose needs the raw coordinate
		m["y"] = b64(new(big.Int).Add(pub.Y, big.NewInt(1)).FillBytes(make([]byte, 32)))
		k, err := jwk.ParseKey(mustJSON(t, m))
		if err != nil {
			t.Skipf("jwx now rejects off-curve points at parse time (good): %v", err)
		}
		var raw any
		if err := k.Raw(&raw); err != nil {
			t.Skipf("jwx now rejects off-curve points in Raw (good): %v", err)
		}
		//lint:ignore SA1019 checking that jwx kept an off-curve point needs the raw coordinates
		if elliptic.P256().IsOnCurve(raw.(*ecdsa.PublicKey).X, raw.(*ecdsa.PublicKey).Y) {
			t.Fatal("test point is on the curve")
		}
	})

	t.Run("safe: ES256 signatures must be 64 bytes (jwx >= 2.0.16)", func(t *testing.T) {
		tok := signRaw(t, "ES256", es.priv, `{"alg":"ES256"}`, testClaims)
		sig := sigOf(t, tok)
		for name, s := range map[string][]byte{"63": sig[1:], "65": append([]byte{0}, sig...), "zero": make([]byte, 64)} {
			if _, err := jws.Verify([]byte(withSig(tok, s)), jws.WithKey(jwa.ES256, es.priv.Public())); err == nil {
				t.Errorf("jwx accepted a %s-byte ES256 signature", name)
			}
		}
	})

	_ = json.Valid
}
