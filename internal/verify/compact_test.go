package verify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/metrics"
)

// Issue 11: the verified-token cache keeps compact entries. With KeepClaims, a Principal's
// Claims hold only the claims routes read, as deep copies; nil KeepClaims keeps every claim;
// what the routes always need (sub, iss, client id, scopes, exp, the provider) is there either way.
func TestKeepClaims(t *testing.T) {
	f := newFixture(t, nil)
	f.ready(t)
	claims := f.claims()
	claims["groups"] = []string{"admins", "ops"}
	claims["tenant"] = map[string]any{"id": 7, "name": "acme"}
	claims["level"] = 3
	tok := f.token("k1", claims)
	tests := []struct {
		name string
		keep []string
		want map[string]any // nil: no Claims
	}{
		{"nil keeps every claim", nil, map[string]any{
			"iss": corpIssuer, "sub": "alice", "aud": corpAud, "exp": json.Number(strconv.FormatInt(f.clock.Now().Unix()+300, 10)),
			"iat": json.Number(strconv.FormatInt(f.clock.Now().Unix(), 10)), "jti": "id-1", "client_id": "web", "scope": "read write",
			"groups": []any{"admins", "ops"}, "tenant": map[string]any{"id": json.Number("7"), "name": "acme"}, "level": json.Number("3"),
		}},
		{"empty keeps none", []string{}, nil},
		{"absent claims only", []string{"department", "email"}, nil},
		{"the named claims, any JSON type", []string{"groups", "tenant", "level", "sub", "email"}, map[string]any{
			"groups": []any{"admins", "ops"}, "tenant": map[string]any{"id": json.Number("7"), "name": "acme"},
			"level": json.Number("3"), "sub": "alice",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(context.Background(), Options{
				Providers: []Provider{corpProvider(f.srv)}, CacheSize: 10, Now: f.clock.Now, KeepClaims: tt.keep,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			for _, round := range []string{"verified", "cached"} {
				p, err := v.Verify(context.Background(), tok, []string{"corp"})
				if err != nil {
					t.Fatalf("%s: %v", round, err)
				}
				if !reflect.DeepEqual(p.Claims, tt.want) {
					t.Fatalf("%s: Claims = %#v, want %#v", round, p.Claims, tt.want)
				}
				if p.Provider != "corp" || p.Issuer != corpIssuer || p.Subject != "alice" || p.ClientID != "web" ||
					p.ID != "id-1" || !slices.Equal(p.Scopes, []string{"read", "write"}) || p.Scope() != "read write" ||
					!p.Expiry.Equal(f.clock.Now().Add(300*time.Second)) || !p.IssuedAt.Equal(f.clock.Now()) {
					t.Fatalf("%s: principal %+v", round, p)
				}
			}
			if n := v.signatureChecks.Load(); n != 1 {
				t.Fatalf("%d signature checks for one token verified then cached", n)
			}
		})
	}
	// The caller's list is copied: changing it after New changes nothing.
	keep := []string{"level"}
	v, err := New(context.Background(), Options{Providers: []Provider{corpProvider(f.srv)}, Now: f.clock.Now, KeepClaims: keep})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	keep[0] = "groups"
	p, err := v.Verify(context.Background(), tok, []string{"corp"})
	if err != nil || !reflect.DeepEqual(p.Claims, map[string]any{"level": json.Number("3")}) {
		t.Fatalf("Claims = %#v (%v)", p.Claims, err)
	}
}

// TokenSum is the token's whole SHA-256, the cache's key, on verified and cached Principals
// alike, and TokenHash its first 8 bytes in hex.
func TestTokenSum(t *testing.T) {
	f := newFixture(t, nil)
	f.ready(t)
	for _, kid := range []string{"k1", "r1"} {
		tok := f.token(kid, f.claims())
		want := sha256.Sum256([]byte(tok))
		for _, round := range []string{"verified", "cached"} {
			p, err := f.verify(tok)
			if err != nil {
				t.Fatal(err)
			}
			if p.TokenSum != want || p.TokenHash != b16(want[:8]) {
				t.Fatalf("%s %s: TokenSum %x TokenHash %s, want %x", kid, round, p.TokenSum, p.TokenHash, want)
			}
		}
	}
}

// Allocation budgets (issue 11; deterministic, unlike time): a cached Verify allocates
// nothing (the SHA-256 of the token used to copy it first), an uncached RS256 Verify stays
// within a budget (262 allocations before issue 11).
func TestVerifyAllocations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cache  int
		kid    string
		budget float64
	}{
		{"cached", 1000, "r1", 0},
		{"uncached RS256", 0, "r1", 45},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) {
				o.CacheSize = tc.cache
				o.KeepClaims = []string{}
				o.Logger = nil
			})
			f.ready(t)
			tok := f.token(tc.kid, f.claims())
			ctx := context.Background()
			if _, err := f.v.Verify(ctx, tok, []string{"corp"}); err != nil {
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(50, func() {
				if _, err := f.v.Verify(ctx, tok, []string{"corp"}); err != nil {
					t.Fatal(err)
				}
			})
			t.Logf("%v allocations", allocs)
			if allocs > tc.budget {
				t.Fatalf("Verify allocated %v times, budget %v", allocs, tc.budget)
			}
		})
	}
}

// loadClaims is the claim set of the load harness's tokens (cmd/tgload): what a cached entry
// holds in `make bench-load`'s memory row.
func loadClaims(n int, now time.Time) map[string]any {
	return map[string]any{
		"iss": corpIssuer, "aud": corpAud, "sub": "user-" + strconv.Itoa(n%1000),
		"iat": now.Unix(), "exp": now.Add(2 * time.Hour).Unix(), "jti": strconv.Itoa(n), "scope": "read",
	}
}

// cacheBytesPerEntry fills v's cache with n Principals built from the load harness's claims
// (as Verify builds them, without signing n tokens) and returns the live heap they add.
func cacheBytesPerEntry(t testing.TB, v *Verifier, n int) float64 {
	t.Helper()
	p := v.providers["corp"]
	now := time.Unix(1_800_000_000, 0)
	claims := make([]*jose.Claims, n)
	for i := range claims {
		payload, err := json.Marshal(loadClaims(i, now))
		if err != nil {
			t.Fatal(err)
		}
		claims[i] = decodedClaims(t, payload)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i, c := range claims {
		sum := sha256.Sum256([]byte(fmt.Sprint("token-", i)))
		v.cache.Add(v.principal(p, c, sum))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(claims) // live in both readings: the difference is the cache's alone
	if v.cache.Len() != n {
		t.Fatalf("cache holds %d entries, want %d", v.cache.Len(), n)
	}
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// decodedClaims returns payload's claims typed as jose.Claims (the values as jose decodes
// them: numbers json.Number). Only what principal reads is set.
func decodedClaims(t testing.TB, payload []byte) *jose.Claims {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		t.Fatal(err)
	}
	exp, _ := raw["exp"].(json.Number).Int64()
	iat, _ := raw["iat"].(json.Number).Int64()
	return &jose.Claims{
		Issuer: raw["iss"].(string), Subject: raw["sub"].(string), ID: raw["jti"].(string),
		Audience: []string{raw["aud"].(string)}, Expiry: time.Unix(exp, 0).UTC(), HasExpiry: true,
		IssuedAt: time.Unix(iat, 0).UTC(), HasIssuedAt: true, Raw: raw,
	}
}

// The cache's memory (issue 11: 100,000 tokens in well under 100 MiB of RSS, 2.6 KiB a token
// before): an entry of the load harness's claims, with the KeepClaims routes need, costs at
// most 300 bytes of live heap with the LRU's own bookkeeping.
func TestCacheEntrySize(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a cache of 100,000 entries")
	}
	const n = 100_000
	f := newFixture(t, func(o *Options) { o.CacheSize = n; o.KeepClaims = []string{} })
	per := cacheBytesPerEntry(t, f.v, n)
	t.Logf("%.0f bytes per cached token", per)
	if per > 300 {
		t.Fatalf("a cached token costs %.0f bytes, budget 300", per)
	}
}

// BenchmarkVerifyCompact is BenchmarkVerify with the KeepClaims the application passes, and
// reports the cache's bytes per entry (issue 11).
func BenchmarkVerifyCompact(b *testing.B) {
	for _, bc := range []struct {
		name  string
		kid   string
		cache int
	}{
		{"cached", "r1", 1000},
		{"uncached RS256", "r1", 0},
		{"uncached ES256", "k1", 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFixture(b, func(o *Options) {
				o.CacheSize = bc.cache
				o.Metrics = metrics.New()
				o.KeepClaims = []string{}
			})
			f.ready(b)
			tok := f.token(bc.kid, f.claims())
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.v.Verify(ctx, tok, []string{"corp"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("cache fill 100k", func(b *testing.B) {
		var per float64
		for b.Loop() {
			f := newFixture(b, func(o *Options) { o.CacheSize = 100_000; o.KeepClaims = []string{} })
			per = cacheBytesPerEntry(b, f.v, 100_000)
		}
		b.ReportMetric(per, "B/entry")
	})
}
