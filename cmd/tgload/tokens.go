package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
)

const (
	providerIssuer   = "https://idp.load.test/"
	providerAudience = "api://gateway"
	issuerClientID   = "load-client"
	issuerSecret     = "load-harness-secret-0123456789"
)

var b64 = base64.RawURLEncoding

// signer makes the callers' tokens: the provider "corp" whose JWKS the harness serves, one
// RSA-2048 key (kid rs) and one P-256 key (kid es).
type signer struct {
	rs  *rsa.PrivateKey
	es  *ecdsa.PrivateKey
	now time.Time
}

func newSigner() (*signer, error) {
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("rsa key: %w", err)
	}
	es, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ec key: %w", err)
	}
	return &signer{rs: rs, es: es, now: time.Now()}, nil
}

// token signs a caller token numbered n (distinct n, distinct token) with alg RS256 or ES256
// (RFC 7518 §3.3 and §3.4: the ECDSA signature is R || S, 32 bytes each).
func (s *signer) token(alg string, n int) (string, error) { return s.tokenWith(alg, n, nil) }

// tokenWith is token with extra claims (a DPoP-bound token's cnf, RFC 9449 §6.1).
func (s *signer) tokenWith(alg string, n int, extra map[string]any) (string, error) {
	kid := map[string]string{"RS256": "rs", "ES256": "es"}[alg]
	hdr, _ := json.Marshal(map[string]string{"alg": alg, "kid": kid, "typ": "JWT"})
	c := map[string]any{
		"iss": providerIssuer, "aud": providerAudience, "sub": "user-" + strconv.Itoa(n%1000),
		"iat": s.now.Unix(), "exp": s.now.Add(2 * time.Hour).Unix(), "jti": strconv.Itoa(n), "scope": "read",
	}
	for k, v := range extra {
		c[k] = v
	}
	claims, _ := json.Marshal(c)
	input := b64.EncodeToString(hdr) + "." + b64.EncodeToString(claims)
	sum := sha256.Sum256([]byte(input))
	var sig []byte
	switch alg {
	case "RS256":
		var err error
		if sig, err = rsa.SignPKCS1v15(nil, s.rs, crypto.SHA256, sum[:]); err != nil {
			return "", fmt.Errorf("sign: %w", err)
		}
	case "ES256":
		r, ss, err := ecdsa.Sign(rand.Reader, s.es, sum[:])
		if err != nil {
			return "", fmt.Errorf("sign: %w", err)
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		ss.FillBytes(sig[32:])
	default:
		return "", fmt.Errorf("alg %q", alg)
	}
	return input + "." + b64.EncodeToString(sig), nil
}

// tokens signs count distinct tokens, numbered from first, on every core the process may use
// (the harness signs before it pins itself).
func (s *signer) tokens(alg string, first, count int) ([]string, error) {
	out := make([]string, count)
	workers := runtime.GOMAXPROCS(0)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < count; i += workers {
				if out[i], errs[w] = s.token(alg, first+i); errs[w] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// jwks is the provider's key set (RFC 7517).
func (s *signer) jwks() []byte {
	pad := func(i *big.Int) string { return b64.EncodeToString(i.FillBytes(make([]byte, 32))) }
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "rs", "alg": "RS256", "use": "sig",
			"n": b64.EncodeToString(s.rs.N.Bytes()), "e": b64.EncodeToString(big.NewInt(int64(s.rs.E)).Bytes())},
		{"kty": "EC", "kid": "es", "alg": "ES256", "use": "sig", "crv": "P-256",
			"x": pad(s.es.X), "y": pad(s.es.Y)},
	}})
	return b
}

// loopbackServers serves the provider's JWKS, the fetch route's IdP token endpoint (RFC 6749
// §4.4), the token_exchange route's (RFC 8693 §2) and the introspection endpoint on 127.0.0.1.
// Each is hit a handful of times per run (tokengate caches the keys, tokens and answers), so they
// cost the client's core nothing measurable.
type loopbackServers struct {
	jwksURL, tokenURL, exchangeURL, introspectURL string
	idpCalls, exchanges, introspections           atomic.Int64
	srv                                           *http.Server
}

// opaqueToken is the introspected target's caller token: opaque (no dots), repeated, so every
// Check after the first is answered from the introspection cache (RFC 7662 §4).
const opaqueToken = "opaque-caller-token-0123456789abcdefghijklmnopqrstuvwxyz"

func startLoopback(jwks []byte) (*loopbackServers, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("loopback listener: %w", err)
	}
	ls := &loopbackServers{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, _ *http.Request) {
		ls.idpCalls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte(`{"access_token":"opaque-upstream-token-from-the-load-idp","token_type":"Bearer","expires_in":3600}`))
	})
	mux.HandleFunc("POST /exchange", func(w http.ResponseWriter, r *http.Request) {
		ls.exchanges.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if r.FormValue("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" || r.FormValue("subject_token") == "" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_request"}`))
			return
		}
		_, _ = w.Write([]byte(`{"access_token":"exchanged-upstream-token-from-the-load-idp","token_type":"Bearer",` +
			`"issued_token_type":"urn:ietf:params:oauth:token-type:access_token","expires_in":3600}`))
	})
	// The RFC 7662 §2.2 answer for opaqueToken; any other token is inactive.
	answer, _ := json.Marshal(map[string]any{"active": true, "iss": providerIssuer, "aud": providerAudience,
		"sub": "user-opaque", "scope": "read", "client_id": "load-client", "exp": time.Now().Add(2 * time.Hour).Unix()})
	mux.HandleFunc("POST /introspect", func(w http.ResponseWriter, r *http.Request) {
		ls.introspections.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if r.FormValue("token") != opaqueToken {
			_, _ = w.Write([]byte(`{"active":false}`))
			return
		}
		_, _ = w.Write(answer)
	})
	base := "http://" + lis.Addr().String()
	ls.jwksURL, ls.tokenURL, ls.exchangeURL, ls.introspectURL = base+"/jwks.json", base+"/token", base+"/exchange", base+"/introspect"
	ls.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = ls.srv.Serve(lis) }()
	return ls, nil
}

func (ls *loopbackServers) close() { _ = ls.srv.Shutdown(context.Background()) }

// freePort asks the kernel for a free loopback port. Another process could take it before the
// server binds it; on this harness's loopback that race has not been seen, and the server's
// start fails loudly if it happens.
func freePort() (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer lis.Close()
	return lis.Addr().String(), nil
}

// tokengateConfig is the run's configuration: an issuer with a generated ES256 key and one
// client (the token endpoint's rate), the providers the harness serves, and the routes.
// verifiedTokens 0 leaves cache.verified_tokens at its default (100000).
func tokengateConfig(grpcAddr, httpAddr string, lb *loopbackServers, verifiedTokens int) string {
	cache := ""
	if verifiedTokens > 0 {
		cache = fmt.Sprintf("cache:\n  verified_tokens: %d\n", verifiedTokens)
	}
	return fmt.Sprintf(`# written by tgload (make bench-load); every address is loopback
server:
  grpc_addr: %q
  http_addr: %q
issuer:
  issuer_url: "http://%s"
  signing_keys:
    - {kid: load, alg: ES256, generate: true}
  clients:
    - client_id: %q
      client_secret: %q
      scopes: [read]
      audiences: [load-api]
providers:
  - name: corp
    issuer: %q
    jwks_uri: %q
    audiences: [%q]
    algorithms: [RS256, ES256]
  - name: opaque
    issuer: %q
    audiences: [%q]
    introspection: {url: %q, client_id: gateway, client_secret: "gateway-secret-0123456789"}
routes:
  - name: mint
    match: {path_prefix: "/mint/"}
    authenticate: {jwt: {providers: [corp]}}
    upstream: {mint: {audience: backend-api}}
  - name: fetch
    match: {path_prefix: "/fetch/"}
    authenticate: {jwt: {providers: [corp]}}
    upstream:
      fetch: {token_url: %q, client_id: gateway, client_secret: "gateway-secret-0123456789"}
  - name: exchange
    match: {path_prefix: "/exchange/"}
    authenticate: {jwt: {providers: [corp]}}
    upstream:
      token_exchange: {token_url: %q, client_id: gateway, client_secret: "gateway-secret-0123456789", audience: backend-api}
  - name: passthrough
    match: {path_prefix: "/pass/"}
    authenticate: {jwt: {providers: [corp]}}
    upstream: {passthrough: {}}
  - name: dpop
    match: {path_prefix: "/dpop/"}
    authenticate: {jwt: {providers: [corp], require_binding: dpop}}
    upstream: {passthrough: {}}
  - name: introspected
    match: {path_prefix: "/opaque/"}
    authenticate: {jwt: {providers: [opaque]}}
    upstream: {passthrough: {}}
%s`, grpcAddr, httpAddr, httpAddr, issuerClientID, issuerSecret, providerIssuer, lb.jwksURL, providerAudience,
		providerIssuer, providerAudience, lb.introspectURL, lb.tokenURL, lb.exchangeURL, cache)
}

// dpopRequests are n Checks of one DPoP-bound RS256 token (cnf.jkt, RFC 9449 §6.1), each with its
// own ES256 proof (jti, htm, htu, iat, ath: RFC 9449 §4.2) signed now, so that iat is inside the
// server's window while the target runs and no jti repeats (a repeat is a replay, refused).
func dpopRequests(s *signer, n int) ([][]byte, error) {
	k, err := jose.GenerateKey("ES256", "dpop-client")
	if err != nil {
		return nil, err
	}
	jkt, err := k.Thumbprint()
	if err != nil {
		return nil, err
	}
	tok, err := s.tokenWith("RS256", 7, map[string]any{"cnf": map[string]any{"jkt": jkt}})
	if err != nil {
		return nil, err
	}
	ath, iat := jose.AccessTokenHash(tok), time.Now().Unix()
	out := make([][]byte, n)
	for i := range out {
		p, err := k.SignDPoPProof(map[string]any{"jti": "load-" + strconv.Itoa(i), "htm": "GET",
			"htu": "https://api.example.com/dpop/x", "iat": iat, "ath": ath}, nil)
		if err != nil {
			return nil, err
		}
		if out[i], err = checkRequestWith("/dpop/x", map[string]string{"authorization": "DPoP " + tok, "dpop": p}); err != nil {
			return nil, err
		}
	}
	return out, nil
}
