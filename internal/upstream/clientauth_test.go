package upstream_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/internal/upstream"
	"github.com/tokengate/tokengate/testenv"
)

// fetchOnce fetches with a fresh cache, so that every call reaches the IdP.
func fetchOnce(t *testing.T, cc upstream.ClientCredentials, log *slog.Logger) (upstream.Token, error) {
	t.Helper()
	c := upstream.NewCache(upstream.Options{Logger: log})
	t.Cleanup(c.Close)
	src, err := upstream.NewFetchSource(c, "r", cc)
	if err != nil {
		t.Fatalf("NewFetchSource: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return src.Token(ctx, upstream.Caller{})
}

func newIdP(t *testing.T) *testenv.IdP {
	t.Helper()
	idp, err := testenv.NewIdP("", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	return idp
}

func register(t *testing.T, idp *testenv.IdP, id string, k *jose.SigningKey, aud string) {
	t.Helper()
	jwks, err := jose.PublicJWKS([]*jose.SigningKey{k})
	if err != nil {
		t.Fatal(err)
	}
	if err := idp.RegisterAssertionClient(id, jwks, aud); err != nil {
		t.Fatal(err)
	}
}

// TestPrivateKeyJWTFetch: a fetch route authenticating with private_key_jwt (RFC 7523 §2.2)
// gets a token from the fake IdP, which verified each assertion's signature and claims; every
// request carries a fresh assertion with its own jti.
func TestPrivateKeyJWTFetch(t *testing.T) {
	for _, tc := range []struct{ alg, aud string }{
		{"ES256", ""}, {"RS256", ""}, {"PS256", ""}, {"EdDSA", ""}, {"ES384", "https://idp.example/"},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			idp := newIdP(t)
			k, err := jose.GenerateKey(tc.alg, "client-key-1")
			if err != nil {
				t.Fatal(err)
			}
			register(t, idp, "gw", k, tc.aud)
			cc := upstream.ClientCredentials{TokenURL: idp.TokenURL(), ClientID: "gw",
				Auth: upstream.PrivateKeyJWTAuth{ClientID: "gw", Key: k, Audience: tc.aud}}
			start := time.Now()
			for i := 0; i < 2; i++ {
				tok, err := fetchOnce(t, cc, nil)
				if err != nil || tok.AccessToken == "" {
					t.Fatalf("fetch %d: %v", i, err)
				}
			}
			got := idp.Assertions()
			if len(got) != 2 || idp.AssertionRejections() != 0 {
				t.Fatalf("IdP accepted %d assertions, refused %d; want 2, 0", len(got), idp.AssertionRejections())
			}
			wantAud := idp.TokenURL()
			if tc.aud != "" {
				wantAud = tc.aud
			}
			for _, a := range got {
				c := a.Claims
				if c.Issuer != "gw" || c.Subject != "gw" || len(c.Audience) != 1 || c.Audience[0] != wantAud {
					t.Errorf("iss %q sub %q aud %q", c.Issuer, c.Subject, c.Audience)
				}
				if !c.HasIssuedAt || !c.HasExpiry || c.Expiry.Sub(c.IssuedAt) > 60*time.Second || c.Expiry.Sub(c.IssuedAt) <= 0 {
					t.Errorf("iat %v exp %v: want exp within 60 s after iat", c.IssuedAt, c.Expiry)
				}
				if c.IssuedAt.Before(start.Add(-2*time.Second)) || c.IssuedAt.After(time.Now().Add(time.Second)) {
					t.Errorf("iat %v not now", c.IssuedAt)
				}
				if len(c.ID) < 16 {
					t.Errorf("jti %q: want a random one", c.ID)
				}
			}
			if got[0].Claims.ID == got[1].Claims.ID || got[0].Raw == got[1].Raw {
				t.Error("two requests carried the same assertion")
			}
			form, auth := idp.LastTokenRequest()
			if auth != "" || form.Get("client_secret") != "" || form.Get("client_id") != "gw" ||
				form.Get("client_assertion_type") != upstream.ClientAssertionType {
				t.Errorf("request: Authorization set %v, client_id %q, client_assertion_type %q", auth != "", form.Get("client_id"), form.Get("client_assertion_type"))
			}
		})
	}
}

// TestPrivateKeyJWTRejected: an assertion signed by a key the IdP does not know is refused
// (invalid_client): tokengate's own client is rejected, 503.
func TestPrivateKeyJWTRejected(t *testing.T) {
	idp := newIdP(t)
	known, _ := jose.GenerateKey("ES256", "k1")
	other, _ := jose.GenerateKey("ES256", "k1")
	register(t, idp, "gw", known, "")
	_, err := fetchOnce(t, upstream.ClientCredentials{TokenURL: idp.TokenURL(), ClientID: "gw",
		Auth: upstream.PrivateKeyJWTAuth{ClientID: "gw", Key: other}}, nil)
	if !errors.Is(err, upstream.ErrUnavailable) || !errors.Is(err, upstream.ErrRejected) {
		t.Fatalf("err = %v, want rejected and unavailable", err)
	}
	if idp.AssertionRejections() != 1 {
		t.Fatalf("rejections = %d", idp.AssertionRejections())
	}
}

// TestClientAssertionFile: the assertion file is read anew for every request (a projected
// service-account token rotates), and a missing or empty file fails the request (503) without
// calling the IdP, with a log line naming the file and never its content.
func TestClientAssertionFile(t *testing.T) {
	idp := newIdP(t)
	k8s, _ := jose.GenerateKey("RS256", "k8s-sa")
	register(t, idp, "system:serviceaccount:ns:gw", k8s, "")
	sign := func() string {
		now := time.Now()
		s, err := k8s.Sign(map[string]any{"iss": "system:serviceaccount:ns:gw", "sub": "system:serviceaccount:ns:gw",
			"aud": idp.TokenURL(), "iat": now.Unix(), "exp": now.Add(50 * time.Second).Unix(), "jti": rand.Text()}, "")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	file := filepath.Join(t.TempDir(), "token")
	cc := upstream.ClientCredentials{TokenURL: idp.TokenURL(), ClientID: "system:serviceaccount:ns:gw"}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	cc.Auth = upstream.ClientAssertionFileAuth{ClientID: cc.ClientID, File: file, Log: log}

	var written []string
	for i := 0; i < 2; i++ {
		a := sign()
		if err := os.WriteFile(file, []byte(a+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		written = append(written, a)
		if _, err := fetchOnce(t, cc, log); err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
	}
	got := idp.Assertions()
	if len(got) != 2 || got[0].Raw != written[0] || got[1].Raw != written[1] {
		t.Fatalf("the IdP did not see the file's current content on each request")
	}

	for _, tc := range []struct {
		name  string
		setup func()
	}{
		{"missing", func() { _ = os.Remove(file) }},
		{"empty", func() { _ = os.WriteFile(file, []byte(" \n"), 0o600) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			logs.Reset()
			before := idp.TokenRequests.Load()
			_, err := fetchOnce(t, cc, log)
			if !errors.Is(err, upstream.ErrUnavailable) || errors.Is(err, upstream.ErrRejected) {
				t.Fatalf("err = %v, want unavailable (503)", err)
			}
			if n := idp.TokenRequests.Load() - before; n != 0 {
				t.Fatalf("the IdP was called %d times", n)
			}
			out := logs.String()
			if !strings.Contains(out, file) || !strings.Contains(out, tc.name) {
				t.Fatalf("log does not name the file and the problem: %s", out)
			}
			for _, w := range written {
				if strings.Contains(out, w) || strings.Contains(out, strings.Split(w, ".")[1]) {
					t.Fatal("log contains an assertion")
				}
			}
		})
	}
}

// TestClientAuthConfigConflicts: a client with a secret and an assertion is a configuration
// error naming the field.
func TestClientAuthConfigConflicts(t *testing.T) {
	k, _ := jose.GenerateKey("ES256", "k")
	cc := upstream.ClientCredentials{TokenURL: "https://idp.example/token", ClientID: "gw", ClientSecret: "s",
		Auth: upstream.PrivateKeyJWTAuth{ClientID: "gw", Key: k}}
	if err := cc.Validate(false); err == nil || !strings.Contains(err.Error(), "client_secret") {
		t.Fatalf("Validate = %v", err)
	}
}

// TestTLSClientAuth: tls_client_auth (RFC 8705 §2) against the fake IdP over real mutual TLS:
// the IdP verifies the client certificate and finds the client by its subject; a certificate
// rotated in place (cert-manager) is presented on the next request; a certificate the IdP does
// not know for the client is rejected (503 for tokengate's own client).
func TestTLSClientAuth(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	idp, err := testenv.NewTLSIdP(nil, ca.Pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	dir := t.TempDir()
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "idp-ca.crt")
	if err := os.WriteFile(caFile, idp.CertificatePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	ca.Issue(t, testkit.LeafSpec{CN: "gateway-1"}).Write(t, certFile, keyFile)
	idp.RegisterTLSClient("gw", "gateway-1")
	auth, err := upstream.NewTLSClientAuth("gw", certFile, keyFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	// One cache for the whole test: its keep-alive connections must not outlive a rotation.
	c := upstream.NewCache(upstream.Options{})
	t.Cleanup(c.Close)
	fetch := func(scope string) error {
		t.Helper()
		src, err := upstream.NewFetchSource(c, "r", upstream.ClientCredentials{TokenURL: idp.TokenURL(), ClientID: "gw",
			Scopes: []string{scope}, Auth: auth})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = src.Token(ctx, upstream.Caller{})
		return err
	}
	if err := fetch("a"); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if form, auth := idp.LastTokenRequest(); form.Get("client_id") != "gw" || form.Get("client_secret") != "" || auth != "" {
		t.Fatalf("request: client_id %q, secret sent %v, Authorization set %v", form.Get("client_id"), form.Get("client_secret") != "", auth != "")
	}
	// Rotation in place: the next request presents the new certificate.
	time.Sleep(10 * time.Millisecond) // a distinct modification time
	ca.Issue(t, testkit.LeafSpec{CN: "gateway-2"}).Write(t, certFile, keyFile)
	idp.RegisterTLSClient("gw", "gateway-2")
	if err := fetch("b"); err != nil {
		t.Fatalf("fetch after rotation: %v", err)
	}
	if cns := idp.TLSClientCNs(); len(cns) != 2 || cns[0] != "gateway-1" || cns[1] != "gateway-2" {
		t.Fatalf("the IdP saw client certificates %v, want [gateway-1 gateway-2]", cns)
	}
	// A certificate the IdP does not bind to this client.
	idp.RegisterTLSClient("gw", "someone-else")
	if err := fetch("c"); !errors.Is(err, upstream.ErrRejected) || !errors.Is(err, upstream.ErrUnavailable) {
		t.Fatalf("err = %v, want rejected (503)", err)
	}
	// A pair that does not load at start-up is an error naming the file.
	if _, err := upstream.NewTLSClientAuth("gw", caFile, filepath.Join(dir, "missing.key"), ""); err == nil || !strings.Contains(err.Error(), "missing.key") {
		t.Fatalf("NewTLSClientAuth with a missing key: %v", err)
	}
}
