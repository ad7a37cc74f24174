package extauthz_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tokengate/tokengate/extauthz"
	"github.com/tokengate/tokengate/internal/upstream"
	"github.com/tokengate/tokengate/issuer"
)

// fixedDescriptions is every error_description a denial may carry: the fuzzer fails on any other
// text, which would mean a token, a kid or a library message reached the client.
func isFixedDescription(d string) bool {
	switch d {
	case "credentials are required", "more than one credential was sent", "the credential is empty",
		"the credential is malformed", "an access token in the URI is not accepted",
		"the Basic credentials are malformed", "the token lacks a required scope",
		"a required claim does not match", "the route is unknown", "no route matches the request",
		"the token issuer's keys are not available", "the upstream credential is unavailable",
		"client credentials were rejected", "the authorization server failed", "the request path is not in normal form":
		return true
	}
	return strings.HasPrefix(d, "token ") && len(d) < 64 // the verifier's fixed texts
}

// FuzzCheck feeds arbitrary Authorization headers to the decision: it must never panic, must
// allow only the seeded good tokens, and must answer only with fixed texts.
func FuzzCheck(f *testing.F) {
	r := newRig(f, 1000)
	good := map[string]bool{}
	for _, kid := range []string{"rs", "es", "ps", "ed"} {
		tok := r.token(kid, map[string]any{"exp": time.Now().Add(24 * time.Hour).Unix(), "iat": time.Now().Unix()})
		good[tok] = true
		f.Add("Bearer " + tok)
		f.Add("bearer " + tok)
		f.Add("Bearer " + tok + ", Bearer " + tok)
		f.Add("Bearer " + strings.Replace(tok, ".", "=.", 1))
		f.Add("Bearer " + tok[:len(tok)-3])
	}
	for _, s := range []string{"", "Bearer", "Bearer ", "Basic YTpi", "Bearer a.b", "Bearer a.b.c.d.e", "Bearer ..",
		"Bearer " + strings.Repeat("A", 9000), "Bearer eyJhbGciOiJub25lIn0.e30.", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x",
		"Bearer \xff\xfe.\xff.\xff", "Bearer " + b64(map[string]any{"alg": "ES256", "crit": []string{"x"}}) + ".e30.AAAA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		d := r.authz.Decide(context.Background(), extauthz.Request{Authority: "x", Path: "/", Method: "GET", Authorization: []string{header}})
		if d.Allowed {
			_, tok, _ := strings.Cut(strings.TrimSpace(header), " ")
			if !good[strings.TrimLeft(tok, " ")] {
				t.Fatalf("allowed a header that is not a seeded good token: %q", header)
			}
			return
		}
		if d.Status != 400 && d.Status != 401 && d.Status != 403 && d.Status != 503 {
			t.Fatalf("status %d", d.Status)
		}
		if !isFixedDescription(d.Description) {
			t.Fatalf("description %q is not one of the fixed texts", d.Description)
		}
		if len(header) > 20 && strings.Contains(d.Body()+d.WWWAuthenticate, header[len(header)-20:]) {
			t.Fatalf("denial echoes the input")
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	for _, bc := range []struct {
		name      string
		cacheSize int
	}{{"cached", 1000}, {"uncached_RS256", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			r := newRig(b, bc.cacheSize)
			srv := extauthz.NewCheckServer(r.authz, nil)
			req := checkReq("billing.example.com", "/api/x", "GET", map[string]string{"authorization": "Bearer " + r.token("rs", nil)})
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				resp, _ := srv.Check(ctx, req)
				if resp.GetOkResponse() == nil {
					b.Fatal("denied")
				}
			}
		})
	}
}

// BenchmarkCheckUpstream measures Checks that rewrite Authorization: a mint route with the
// minted token cached, a mint route whose every caller token is new (cold: verify + sign), and a
// fetch route with the IdP's token cached.
func BenchmarkCheckUpstream(b *testing.B) {
	r := newRig(b, 1000)
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"opaque-upstream-token","token_type":"Bearer","expires_in":3600}`))
	}))
	defer idp.Close()
	tokens := upstream.NewCache(upstream.Options{Size: 100000})
	defer tokens.Close()
	routes := []extauthz.Route{
		{Name: "mint", PathPrefix: "/mint/", Auth: extauthz.AuthJWT, Providers: []string{"corp"},
			Upstream: extauthz.UpstreamToken, Source: upstream.NewMintSource(tokens, "mint", r.iss, issuer.MintRequest{Audience: "billing", TTL: 5 * time.Minute})},
		{Name: "fetch", PathPrefix: "/fetch/", Auth: extauthz.AuthJWT, Providers: []string{"corp"},
			Upstream: extauthz.UpstreamToken, Source: must(upstream.NewFetchSource(tokens, "fetch", upstream.ClientCredentials{TokenURL: idp.URL, ClientID: "gw", ClientSecret: "s"}))},
	}
	authz, err := extauthz.New(routes, extauthz.Deps{Verifier: r.verifier})
	if err != nil {
		b.Fatal(err)
	}
	srv := extauthz.NewCheckServer(authz, nil)
	ctx := context.Background()
	run := func(b *testing.B, req func(i int) *authv3.CheckRequest) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			resp, _ := srv.Check(ctx, req(i))
			if resp.GetOkResponse() == nil {
				b.Fatalf("denied: %v", resp.GetDeniedResponse())
			}
			i++
		}
	}
	caller := r.token("es", nil)
	b.Run("mint_cached", func(b *testing.B) {
		req := checkReq("x", "/mint/a", "GET", map[string]string{"authorization": "Bearer " + caller})
		run(b, func(int) *authv3.CheckRequest { return req })
	})
	b.Run("mint_cold", func(b *testing.B) {
		// A new caller token each time: verify (ES256) + sign (ES256) + cache insert.
		reqs := make([]*authv3.CheckRequest, 0, 4096)
		for i := range cap(reqs) {
			reqs = append(reqs, checkReq("x", "/mint/a", "GET", map[string]string{"authorization": "Bearer " + r.token("es", map[string]any{"jti": strconv.Itoa(i)})}))
		}
		run(b, func(i int) *authv3.CheckRequest { return reqs[i%len(reqs)] })
	})
	b.Run("fetch_cached", func(b *testing.B) {
		req := checkReq("x", "/fetch/a", "GET", map[string]string{"authorization": "Bearer " + caller})
		run(b, func(int) *authv3.CheckRequest { return req })
	})
}
