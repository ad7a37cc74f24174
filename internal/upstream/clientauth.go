package upstream

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/tokengate/tokengate/internal/jose"
)

// ClientAssertionType is the client_assertion_type of a JWT client assertion (RFC 7523 §2.2).
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// MaxAssertionLifetime bounds the exp of the assertions PrivateKeyJWTAuth signs: an assertion
// is single use (RFC 7523 §3 item 7: jti), so a short lifetime limits what a captured one is
// worth and how long an IdP must remember its jti.
const MaxAssertionLifetime = 60 * time.Second

// maxAssertionFileBytes caps what ClientAssertionFileAuth reads: a projected service-account
// token is a few kilobytes.
const maxAssertionFileBytes = 64 << 10

// assertionAuth is implemented by the ClientAuths that send a client assertion in the form
// (RFC 7521 §4.2), which x/oauth2's clientcredentials can carry as endpoint parameters.
type assertionAuth interface {
	ClientAuth
	// authID names the credential (not its value) for the token cache key.
	authID() string
}

// PrivateKeyJWTAuth is private_key_jwt (RFC 7523 §2.2, OpenID Connect Core §9): every request
// carries a fresh JWT signed with the client's key, iss = sub = the client id, aud = the token
// endpoint (or Audience), a random jti and an exp at most MaxAssertionLifetime ahead.
type PrivateKeyJWTAuth struct {
	ClientID string
	Key      *jose.SigningKey
	Audience string        // the assertion's aud; "" means the token endpoint URL (RFC 7523 §3 item 3)
	Lifetime time.Duration // exp - iat; 0 or more than MaxAssertionLifetime means MaxAssertionLifetime
	Now      func() time.Time
}

// Authenticate signs a new assertion and adds it with client_id to the form.
func (a PrivateKeyJWTAuth) Authenticate(_ context.Context, tokenURL string, form url.Values, _ http.Header) error {
	if a.Key == nil || a.ClientID == "" {
		return errors.New("upstream: private_key_jwt: no key or client id")
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	life := a.Lifetime
	if life <= 0 || life > MaxAssertionLifetime {
		life = MaxAssertionLifetime
	}
	aud := a.Audience
	if aud == "" {
		aud = tokenURL
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return errors.New("upstream: private_key_jwt: no randomness for jti")
	}
	t := now()
	assertion, err := a.Key.Sign(map[string]any{
		"iss": a.ClientID,
		"sub": a.ClientID,
		"aud": aud,
		"jti": hex.EncodeToString(jti[:]),
		"iat": t.Unix(),
		"exp": t.Add(life).Unix(),
	}, "")
	if err != nil {
		return errors.New("upstream: private_key_jwt: cannot sign the assertion")
	}
	form.Set("client_id", a.ClientID)
	form.Set("client_assertion_type", ClientAssertionType)
	form.Set("client_assertion", assertion)
	return nil
}

func (a PrivateKeyJWTAuth) authID() string {
	if a.Key == nil {
		return "private_key_jwt"
	}
	return "private_key_jwt\x00" + a.Key.Algorithm() + "\x00" + a.Key.KeyID() + "\x00" + a.Audience
}

// ClientAssertionFileAuth sends a ready-made JWT client assertion read from File on every
// request (RFC 7521 §4.2, RFC 7523 §2.2): a projected Kubernetes service-account token, which
// the kubelet rewrites before it expires, so the file is never cached. This is how workload
// identity federation (Entra ID, Google, AWS, Keycloak) authenticates a client with no secret.
type ClientAssertionFileAuth struct {
	ClientID string
	File     string
	Log      *slog.Logger // where a missing or empty file is reported (by name only); nil for none
}

// Authenticate reads the assertion and adds it with client_id to the form. A missing, empty or
// oversized file is an error naming the file, never its content: the request is not sent.
func (a ClientAssertionFileAuth) Authenticate(_ context.Context, _ string, form url.Values, _ http.Header) error {
	v, err := a.read()
	if err != nil {
		if a.Log != nil {
			a.Log.Warn("cannot read the client assertion file", "file", a.File, "error", err.Error())
		}
		return err
	}
	form.Set("client_id", a.ClientID)
	form.Set("client_assertion_type", ClientAssertionType)
	form.Set("client_assertion", v)
	return nil
}

// read returns the file's content without surrounding white space. Its errors name the file
// and say what is wrong, never what the file holds.
func (a ClientAssertionFileAuth) read() (string, error) {
	f, err := os.Open(a.File)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("client assertion file %s: missing", a.File)
		}
		return "", fmt.Errorf("client assertion file %s: cannot be read", a.File)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAssertionFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("client assertion file %s: cannot be read", a.File)
	}
	if len(b) > maxAssertionFileBytes {
		return "", fmt.Errorf("client assertion file %s: larger than %d bytes", a.File, maxAssertionFileBytes)
	}
	v := bytes.TrimSpace(b)
	if len(v) == 0 {
		return "", fmt.Errorf("client assertion file %s: empty", a.File)
	}
	if !isVSChars(string(v)) {
		return "", fmt.Errorf("client assertion file %s: not a compact JWT", a.File)
	}
	return string(v), nil
}

func (a ClientAssertionFileAuth) authID() string {
	return "client_assertion_file\x00" + a.File
}
