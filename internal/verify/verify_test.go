package verify

import (
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/defaults"
	"github.com/tokengate/tokengate/internal/jwks/jwkstest"
)

var b64 = base64.RawURLEncoding

// rawToken builds a token from literal header and payload JSON with the given signature bytes.
func rawToken(header, payload string, sig []byte) string {
	return b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(payload)) + "." + b64.EncodeToString(sig)
}

func with(c map[string]any, kv ...any) map[string]any {
	for i := 0; i+1 < len(kv); i += 2 {
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}

func without(c map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		delete(c, k)
	}
	return c
}

// TestVerifyTable covers RFC 8725 §3 and RFC 7519 §4.1 at the verifier level (docs/security.md#jose-hardening):
// each token gets exactly the expected decision and fixed description.
func TestVerifyTable(t *testing.T) {
	type row struct {
		name  string
		prov  func(*Provider)
		token func(f *fixture) string
		desc  string // "" = allowed
	}
	now := func(f *fixture) int64 { return f.clock.Now().Unix() }
	sec := int64(skew / time.Second)
	life := int64(lifetime / time.Second)
	rows := []row{
		{name: "valid", token: func(f *fixture) string { return f.token("k1", f.claims()) }},
		{name: "valid RS256", token: func(f *fixture) string { return f.token("r1", f.claims()) }},

		// Row 5, 6, 7: algorithms.
		{name: "alg none", desc: DescAlgorithm, token: func(f *fixture) string {
			return rawToken(`{"alg":"none","kid":"k1"}`, `{"iss":"`+corpIssuer+`"}`, []byte("x"))
		}},
		{name: "alg NONE", desc: DescAlgorithm, token: func(f *fixture) string {
			return rawToken(`{"alg":"NONE","kid":"k1"}`, `{"iss":"`+corpIssuer+`"}`, []byte("x"))
		}},
		{name: "alg empty", desc: DescAlgorithm, token: func(f *fixture) string {
			return rawToken(`{"alg":"","kid":"k1"}`, `{"iss":"`+corpIssuer+`"}`, []byte("x"))
		}},
		{name: "HS256 keyed with the RSA public key", desc: DescAlgorithm, token: func(f *fixture) string {
			der, _ := x509.MarshalPKIXPublicKey(f.keys["r1"].Signer.Public().(*rsa.PublicKey))
			hb, _ := json.Marshal(map[string]any{"alg": "HS256", "kid": "r1", "typ": "at+jwt"})
			pb, _ := json.Marshal(f.claims())
			input := b64.EncodeToString(hb) + "." + b64.EncodeToString(pb)
			mac := hmac.New(sha256.New, der)
			mac.Write([]byte(input))
			return input + "." + b64.EncodeToString(mac.Sum(nil))
		}},
		{name: "header PS256 with the RS256 key", desc: DescAlgorithm, token: func(f *fixture) string {
			return f.keys["r1"].WithKid("r1", "PS256").Sign(f.claims(), "at+jwt")
		}},
		{name: "alg outside the provider's list", desc: DescAlgorithm,
			prov:  func(p *Provider) { p.Algorithms = []string{"ES256"} },
			token: func(f *fixture) string { return f.token("r1", f.claims()) }},

		// Row 11: kid.
		{name: "kid path", desc: DescUnknownKey, token: func(f *fixture) string {
			return f.keys["k1"].WithKid("../x", "").Sign(f.claims(), "at+jwt")
		}},
		{name: "kid SQL", desc: DescUnknownKey, token: func(f *fixture) string {
			return f.keys["k1"].WithKid("' OR 1=1 --", "").Sign(f.claims(), "at+jwt")
		}},
		{name: "kid 10 KB", desc: DescTooLarge, token: func(f *fixture) string {
			return f.keys["k1"].WithKid(strings.Repeat("a", 10<<10), "").Sign(f.claims(), "at+jwt")
		}},
		{name: "kid 1 KB", desc: DescMalformed, token: func(f *fixture) string {
			return f.keys["k1"].WithKid(strings.Repeat("a", 1<<10), "").Sign(f.claims(), "at+jwt")
		}},
		{name: "kid a number", desc: DescMalformed, token: func(f *fixture) string {
			return f.keys["k1"].SignHeader(map[string]any{"alg": "ES256", "kid": 7}, f.claims())
		}},
		{name: "no kid, two ES256 keys", desc: DescUnknownKey, token: func(f *fixture) string {
			return f.keys["k1"].SignHeader(map[string]any{"alg": "ES256", "typ": "at+jwt"}, f.claims())
		}},
		{name: "no kid, one RS256 key", token: func(f *fixture) string {
			return f.keys["r1"].SignHeader(map[string]any{"alg": "RS256", "typ": "at+jwt"}, f.claims())
		}},
		{name: "unknown kid", desc: DescUnknownKey, token: func(f *fixture) string {
			return jwkstest.MustKey("ES256", "k9").Sign(f.claims(), "at+jwt")
		}},
		{name: "known kid, another key", desc: DescSignature, token: func(f *fixture) string {
			return jwkstest.MustKey("ES256", "k1").Sign(f.claims(), "at+jwt")
		}},
		{name: "tampered payload", desc: DescSignature, token: func(f *fixture) string {
			good := strings.Split(f.token("k1", f.claims()), ".")
			evil, _ := json.Marshal(with(f.claims(), "sub", "admin"))
			return good[0] + "." + b64.EncodeToString(evil) + "." + good[2]
		}},
		{name: "jku header", desc: DescHeader, token: func(f *fixture) string {
			return f.keys["k1"].SignHeader(map[string]any{"alg": "ES256", "kid": "k1", "jku": "http://127.0.0.1:1/jwks"}, f.claims())
		}},

		// Size and structure.
		{name: "empty", desc: DescMalformed, token: func(*fixture) string { return "" }},
		{name: "two segments", desc: DescMalformed, token: func(*fixture) string { return "eyJhbGciOiJFUzI1NiJ9.e30" }},
		{name: "over max_token_bytes", desc: DescTooLarge, token: func(f *fixture) string {
			return f.token("k1", with(f.claims(), "pad", strings.Repeat("x", defaults.MaxTokenBytes)))
		}},

		// Row 14: exp.
		{name: "exp missing", desc: DescNoExpiry, token: func(f *fixture) string { return f.token("k1", without(f.claims(), "exp")) }},
		{name: "exp 0", desc: DescExpired, token: func(f *fixture) string { return f.token("k1", with(f.claims(), "exp", 0, "iat", 0)) }},
		{name: "exp -1", desc: DescExpired, token: func(f *fixture) string { return f.token("k1", with(f.claims(), "exp", -1, "iat", -10)) }},
		{name: "exp RFC 3339 string", desc: DescMalformed, token: func(f *fixture) string {
			return f.token("k1", with(f.claims(), "exp", time.Unix(now(f)+60, 0).UTC().Format(time.RFC3339)))
		}},
		{name: "exp numeric string", desc: DescMalformed, token: func(f *fixture) string {
			return f.token("k1", with(f.claims(), "exp", "1800000060"))
		}},
		{name: "exp 1e309", desc: DescMalformed, token: func(f *fixture) string { return f.token("k1", with(f.claims(), "exp", raw("1e309"))) }},
		{name: "exp 2^63", desc: DescMalformed, token: func(f *fixture) string {
			return f.token("k1", with(f.claims(), "exp", raw("9223372036854775808")))
		}},
		{name: "exp null", desc: DescMalformed, token: func(f *fixture) string { return f.token("k1", with(f.claims(), "exp", nil)) }},

		// Row 15: time boundaries (skew 30 s, max lifetime 1 h).
		{name: "exp = now-skew+1", token: func(f *fixture) string {
			return f.token("k1", with(f.claims(), "exp", now(f)-sec+1, "iat", now(f)-600))
		}},
		{name: "exp = now-skew", desc: DescExpired, token: func(f *fixture) string {
			return f.token("k1", with(f.claims(), "exp", now(f)-sec, "iat", now(f)-600))
		}},
		{name: "exp = now-skew-1", desc: DescExpired, token: func(f *fixture) string {
			return f.token("k1", with(f.claims(), "exp", now(f)-sec-1, "iat", now(f)-600))
		}},
		{name: "exp fraction just inside", token: func(f *fixture) string {
			return f.token("k1", with(f.claims(), "exp", float64(now(f)-sec)+0.5, "iat", now(f)-600))
		}},
		{name: "nbf = now+skew", token: func(f *fixture) string { return f.token("k1", with(f.claims(), "nbf", now(f)+sec)) }},
		{name: "nbf = now+skew+1", desc: DescNotYetValid, token: func(f *fixture) string {
			return f.token("k1", with(f.claims(), "nbf", now(f)+sec+1))
		}},
		{name: "nbf 0", token: func(f *fixture) string { return f.token("k1", with(f.claims(), "nbf", 0)) }},
		{name: "iat = now+skew", token: func(f *fixture) string { return f.token("k1", with(f.claims(), "iat", now(f)+sec)) }},
		{name: "iat = now+skew+1", desc: DescIssuedFuture, token: func(f *fixture) string {
			return f.token("k1", with(f.claims(), "iat", now(f)+sec+1))
		}},
		{name: "iat 1 h in the future", desc: DescIssuedFuture, token: func(f *fixture) string {
			return f.token("k1", with(f.claims(), "iat", now(f)+3600, "exp", now(f)+3900))
		}},
		{name: "lifetime = max", token: func(f *fixture) string {
			return f.token("k1", with(f.claims(), "iat", now(f)-60, "exp", now(f)-60+life))
		}},
		{name: "lifetime = max+1", desc: DescLifetime, token: func(f *fixture) string {
			return f.token("k1", with(f.claims(), "iat", now(f)-60, "exp", now(f)-60+life+1))
		}},
		{name: "no iat, exp-now = max", token: func(f *fixture) string {
			return f.token("k1", with(without(f.claims(), "iat"), "exp", now(f)+life))
		}},
		{name: "no iat, exp-now = max+1", desc: DescLifetime, token: func(f *fixture) string {
			return f.token("k1", with(without(f.claims(), "iat"), "exp", now(f)+life+1))
		}},
		{name: "iat negative", desc: DescLifetime, token: func(f *fixture) string { return f.token("k1", with(f.claims(), "iat", -1)) }},

		// Row 16: issuer.
		{name: "wrong iss", desc: DescIssuer, token: func(f *fixture) string {
			return f.token("k1", with(f.claims(), "iss", "https://evil.example.com/"))
		}},
		{name: "iss without trailing slash", desc: DescIssuer, token: func(f *fixture) string {
			return f.token("k1", with(f.claims(), "iss", strings.TrimSuffix(corpIssuer, "/")))
		}},
		{name: "iss missing", desc: DescIssuer, token: func(f *fixture) string { return f.token("k1", without(f.claims(), "iss")) }},
		{name: "iss a number", desc: DescMalformed, token: func(f *fixture) string { return f.token("k1", with(f.claims(), "iss", 1)) }},

		// Row 17: audience.
		{name: "aud missing", desc: DescAudience, token: func(f *fixture) string { return f.token("k1", without(f.claims(), "aud")) }},
		{name: "aud []", desc: DescAudience, token: func(f *fixture) string { return f.token("k1", with(f.claims(), "aud", []string{})) }},
		{name: `aud ""`, desc: DescAudience, token: func(f *fixture) string { return f.token("k1", with(f.claims(), "aud", "")) }},
		{name: `aud [""]`, desc: DescAudience, token: func(f *fixture) string { return f.token("k1", with(f.claims(), "aud", []string{""})) }},
		{name: "aud wrong case", desc: DescAudience, token: func(f *fixture) string {
			return f.token("k1", with(f.claims(), "aud", strings.ToUpper(corpAud)))
		}},
		{name: "aud other", desc: DescAudience, token: func(f *fixture) string { return f.token("k1", with(f.claims(), "aud", "billing")) }},
		{name: `aud ["x","ours"]`, token: func(f *fixture) string { return f.token("k1", with(f.claims(), "aud", []string{"x", corpAud})) }},
		{name: "aud a number", desc: DescMalformed, token: func(f *fixture) string { return f.token("k1", with(f.claims(), "aud", 3)) }},
		{name: "second configured audience", prov: func(p *Provider) { p.Audiences = []string{"other", corpAud} },
			token: func(f *fixture) string { return f.token("k1", f.claims()) }},

		// Row 18: typ.
		{name: "typ JWT, at+jwt required", desc: DescType, prov: func(p *Provider) { p.RequireTyp = "at+jwt" },
			token: func(f *fixture) string { return f.keys["k1"].Sign(f.claims(), "JWT") }},
		{name: "typ missing, at+jwt required", desc: DescType, prov: func(p *Provider) { p.RequireTyp = "at+jwt" },
			token: func(f *fixture) string { return f.keys["k1"].Sign(f.claims(), "") }},
		{name: "typ AT+JWT", prov: func(p *Provider) { p.RequireTyp = "at+jwt" },
			token: func(f *fixture) string { return f.keys["k1"].Sign(f.claims(), "AT+JWT") }},
		{name: "typ application/at+jwt", prov: func(p *Provider) { p.RequireTyp = "at+jwt" },
			token: func(f *fixture) string { return f.keys["k1"].Sign(f.claims(), "Application/AT+JWT") }},
		{name: "required application/at+jwt, typ at+jwt", prov: func(p *Provider) { p.RequireTyp = "application/at+jwt" },
			token: func(f *fixture) string { return f.keys["k1"].Sign(f.claims(), "at+jwt") }},
		{name: "typ at+jwt+x", desc: DescType, prov: func(p *Provider) { p.RequireTyp = "at+jwt" },
			token: func(f *fixture) string { return f.keys["k1"].Sign(f.claims(), "at+jwt+x") }},
		{name: "typ JWT, nothing required", token: func(f *fixture) string { return f.keys["k1"].Sign(f.claims(), "JWT") }},
		{name: "typ missing, nothing required", token: func(f *fixture) string { return f.keys["k1"].Sign(f.claims(), "") }},
	}
	for _, tt := range rows {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) {
				if tt.prov != nil {
					tt.prov(&o.Providers[0])
				}
			})
			f.ready(t)
			tok := tt.token(f)
			p, err := f.verify(tok)
			if tt.desc == "" {
				if err != nil {
					t.Fatalf("refused: %v (cause %v)", err, errorCause(err))
				}
				if p.Provider != "corp" || p.Subject != "alice" || p.Issuer != corpIssuer {
					t.Fatalf("principal %+v", p)
				}
				return
			}
			if p != nil {
				t.Fatalf("got a principal with an error")
			}
			expectError(t, err, KindInvalid, tt.desc, tok, "k1", "r1", "alice", corpIssuer)
		})
	}
}

func errorCause(err error) error {
	if ve, ok := err.(*Error); ok {
		return ve.Err
	}
	return nil
}

func TestPrincipal(t *testing.T) {
	tests := []struct {
		name     string
		claims   map[string]any
		scopes   []string
		clientID string
	}{
		{"scope string", map[string]any{"scope": "read  write", "client_id": "web"}, []string{"read", "write"}, "web"},
		{"scp array", map[string]any{"scp": []string{"read", "write"}, "azp": "spa"}, []string{"read", "write"}, "spa"},
		{"scp string (Azure AD)", map[string]any{"scp": "read write"}, []string{"read", "write"}, ""},
		{"scope wins over scp", map[string]any{"scope": "a", "scp": []string{"b"}}, []string{"a"}, ""},
		{"client_id wins over azp", map[string]any{"client_id": "c", "azp": "a"}, nil, "c"},
		{"scope a number", map[string]any{"scope": 3}, nil, ""},
		{"scp with a non-string", map[string]any{"scp": []any{"a", 1}}, nil, ""},
		{"no scope", map[string]any{}, nil, ""},
		// Issue 9, finding 9: RFC 6749 §3.3 separates scope-tokens by
		// the space character (%x20) only; any other whitespace is part of a scope, so a
		// required `admin` is never satisfied by "x\u00a0admin" or "x\tadmin".
		{"no-break space is not a separator", map[string]any{"scope": "x\u00a0admin"}, []string{"x\u00a0admin"}, ""},
		{"tab is not a separator", map[string]any{"scope": "x\tadmin"}, []string{"x\tadmin"}, ""},
		{"newline is not a separator", map[string]any{"scope": "x\nadmin read"}, []string{"x\nadmin", "read"}, ""},
		{"other Unicode spaces", map[string]any{"scope": "x\u2003admin x\u3000admin x\u0085admin"}, []string{"x\u2003admin", "x\u3000admin", "x\u0085admin"}, ""},
		{"leading, trailing and double spaces", map[string]any{"scope": " read  write "}, []string{"read", "write"}, ""},
		{"empty scope string", map[string]any{"scope": ""}, nil, ""},
		{"scp string: tab is not a separator", map[string]any{"scp": "x\tadmin"}, []string{"x\tadmin"}, ""},
		{"scp array element with a no-break space", map[string]any{"scp": []string{"x\u00a0admin"}}, []string{"x\u00a0admin"}, ""},
		// An array element is one scope-token: one holding a space (or empty) is malformed, and a
		// malformed claim yields no scope at all (fail closed) rather than two scopes.
		{"scp array element with a space", map[string]any{"scp": []string{"read admin"}}, nil, ""},
		{"scp array with an empty element", map[string]any{"scp": []string{"read", ""}}, nil, ""},
		// The first of scope and scp that is present decides: a malformed scope does not fall
		// back to scp.
		{"malformed scope does not fall back to scp", map[string]any{"scope": 3, "scp": "admin"}, nil, ""},
		{"scope array (string elements)", map[string]any{"scope": []string{"read", "write"}}, []string{"read", "write"}, ""},
	}
	f := newFixture(t, nil)
	f.ready(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := without(f.claims(), "scope", "client_id")
			for k, v := range tt.claims {
				c[k] = v
			}
			tok := f.token("k1", c)
			p, err := f.verify(tok)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.Scopes, tt.scopes) || p.Scope() != strings.Join(tt.scopes, " ") || p.ClientID != tt.clientID {
				t.Fatalf("scopes %q (%q) client %q; want %q %q", p.Scopes, p.Scope(), p.ClientID, tt.scopes, tt.clientID)
			}
			sum := sha256.Sum256([]byte(tok))
			if p.TokenHash != b16(sum[:8]) || p.ID != "id-1" || p.Subject != "alice" {
				t.Fatalf("principal %+v", p)
			}
			if !p.Expiry.Equal(f.clock.Now().Add(300*time.Second)) || !p.IssuedAt.Equal(f.clock.Now()) {
				t.Fatalf("times %v %v", p.Expiry, p.IssuedAt)
			}
			if p.Claims["sub"] != "alice" {
				t.Fatalf("claims %v", p.Claims)
			}
		})
	}
}

func b16(b []byte) string {
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, hex[c>>4], hex[c&15])
	}
	return string(out)
}
