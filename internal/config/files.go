package config

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tokengate/tokengate/internal/jose"
	"github.com/tokengate/tokengate/internal/secrets"
)

// Limits on files named by the configuration.
const (
	maxSecretBytes = 64 << 10
	maxKeyBytes    = 1 << 20
)

// minSecretLen is the shortest client secret without a warning: 16 characters of a random
// secret are about 96 bits.
const minSecretLen = 16

// resolveFiles reads every secret and file of cfg into its resolved form and reports their
// problems, never with a secret or a file's content in a message.
func resolveFiles(cfg *Config, baseDir string, p *problems) {
	// read returns the file at name, or nil after reporting why it cannot be read or, when ok
	// refuses its content, what it should hold.
	read := func(path, name string, limit int64, ok func([]byte) bool, want string) []byte {
		data, err := readFile(baseDir, name, limit)
		switch {
		case err != nil:
			p.add(path, "%s", err.Error())
		case ok != nil && !ok(data):
			p.add(path, "%s", want)
			return nil
		}
		return data
	}
	if is := cfg.Issuer; is != nil {
		for i := range is.SigningKeys {
			if k := &is.SigningKeys[i]; k.File != "" {
				k.KeyData = read(fmt.Sprintf("issuer.signing_keys[%d].file", i), k.File, maxKeyBytes,
					looksLikePrivateKey, "does not hold a PEM private key or a private JWK")
			}
		}
		for i := range is.Clients {
			resolveClient(&is.Clients[i], indexPath("issuer.clients", i), baseDir, p)
		}
	}
	for i := range cfg.Providers {
		if in := cfg.Providers[i].Introspection; in != nil {
			resolveClientAuth(indexPath("providers", i)+".introspection", &in.ClientSecret, &in.ClientAssertion, baseDir, p, read)
		}
	}
	for i := range cfg.Routes {
		if f := cfg.Routes[i].Upstream.Fetch; f != nil {
			resolveClientAuth(indexPath("routes", i)+".upstream.fetch", &f.ClientSecret, &f.ClientAssertion, baseDir, p, read)
		}
		if te := cfg.Routes[i].Upstream.TokenExchange; te != nil {
			resolveClientAuth(indexPath("routes", i)+".upstream.token_exchange", &te.ClientSecret, &te.ClientAssertion, baseDir, p, read)
		}
	}
	if g := cfg.Server.GatewayTLS; g != nil {
		const path = "server.gateway_tls"
		var cert, key []byte
		if g.CertFile != "" {
			g.CertPath = resolvePath(baseDir, g.CertFile)
			cert = read(path+".cert_file", g.CertFile, maxKeyBytes, nil, "")
		}
		if g.KeyFile != "" {
			g.KeyPath = resolvePath(baseDir, g.KeyFile)
			key = read(path+".key_file", g.KeyFile, maxKeyBytes, nil, "")
		}
		if _, err := tls.X509KeyPair(cert, key); cert != nil && key != nil && err != nil {
			// The parser's text may describe the key; say only what is wrong with the pair.
			p.add(path, "cert_file and key_file do not hold a matching PEM certificate and private key")
		}
		if g.ClientCAFile != "" {
			// The server re-reads the files when they change (rotation): only paths are kept.
			g.ClientCAPath = resolvePath(baseDir, g.ClientCAFile)
			read(path+".client_ca_file", g.ClientCAFile, maxKeyBytes, holdsCerts, "holds no PEM certificate")
		}
	}
	if r := cfg.Cache.Redis; r != nil {
		r.Password.resolve("cache.redis", "password", false, baseDir, p)
		if r.EncryptionKeyFile != "" {
			decode := func(data []byte) bool {
				var err error
				r.EncryptionKey, err = secrets.DecodeEncryptionKey(data)
				return err == nil
			}
			read("cache.redis.encryption_key_file", r.EncryptionKeyFile, maxSecretBytes, decode,
				"must hold a 32-byte key: 32 raw bytes, 64 hex digits or base64 of 32 bytes")
		}
		if r.TLS.CAFile != "" {
			r.TLS.CAData = read("cache.redis.tls.ca_file", r.TLS.CAFile, maxKeyBytes, holdsCerts,
				"holds no PEM certificate")
		}
	}
}

func holdsCerts(data []byte) bool { return x509.NewCertPool().AppendCertsFromPEM(data) }

// resolveClient checks an issuer client's secret sources and fills SecretHashes.
func resolveClient(c *Client, path string, baseDir string, p *problems) {
	sources := count(c.ClientSecretHash != "", c.ClientSecretHashes != nil, c.ClientSecret.Inline != "",
		c.ClientSecret.File != "", c.JWKS != nil, c.JWKSURI != "")
	if sources != 1 {
		p.add(path, "exactly one of client_secret_hash, client_secret_hashes, client_secret, "+
			"client_secret_file, jwks, jwks_uri")
	}
	hash := func(path, s string) {
		if h, err := secrets.ParseHash(s); err == nil {
			c.SecretHashes = append(c.SecretHashes, h)
		} else {
			p.add(path, "must be sha256: followed by 64 hex digits")
		}
	}
	if c.ClientSecretHash != "" {
		hash(path+".client_secret_hash", c.ClientSecretHash)
	}
	if c.ClientSecretHashes != nil && len(c.ClientSecretHashes) == 0 {
		p.add(path+".client_secret_hashes", "must not be empty")
	}
	for j, s := range c.ClientSecretHashes {
		hash(indexPath(path+".client_secret_hashes", j), s)
	}
	cs := &c.ClientSecret
	if (cs.Inline != "") != (cs.File != "") && cs.resolve(path, "client_secret", false, baseDir, p) {
		c.SecretHashes = append(c.SecretHashes, sha256.Sum256([]byte(cs.value)))
		if len(cs.value) < minSecretLen {
			// A placeholder left in a manifest works as a real credential.
			key := ".client_secret_file"
			if cs.Inline != "" {
				key = ".client_secret"
			}
			p.warn(path+key, "the secret is shorter than %d characters; use a long random secret "+
				"(openssl rand -base64 32)", minSecretLen)
		}
		cs.value = "" // the issuer needs only the hash
	}
	if sources != 1 {
		c.SecretHashes = nil
	}
}

// resolve fills s.value from the inline value or the file; path is the enclosing mapping and
// name the key. Both at once is a problem; neither is one only when required. It reports
// whether there is a secret.
func (s *Secret) resolve(path, name string, required bool, baseDir string, p *problems) bool {
	switch {
	case s.Inline != "" && s.File != "" || s.Inline == "" && s.File == "" && required:
		word := "at most"
		if required {
			word = "exactly"
		}
		p.add(path, "%s one of %s, %s_file", word, name, name)
	case s.Inline != "":
		s.value = s.Inline
	case s.File != "":
		data, err := readFile(baseDir, s.File, maxSecretBytes)
		if err != nil {
			p.add(path+"."+name+"_file", "%s", err.Error())
			return false
		}
		// One trailing newline, as `echo secret > file` and Kubernetes secrets leave one.
		s.value = string(data)
		if v, ok := strings.CutSuffix(s.value, "\n"); ok {
			s.value = strings.TrimSuffix(v, "\r")
		}
		if s.value == "" {
			p.add(path+"."+name+"_file", "file is empty")
		}
	}
	return s.value != ""
}

// resolveClientAuth resolves how tokengate's client authenticates at an IdP: exactly one of a
// client secret (inline or file), a private key (parsed here, so a key that does not parse is
// a load error naming the field) or a client assertion file (only its path: it is read anew
// for every request, RFC 7521 §4.2, and may not exist yet at start-up).
func resolveClientAuth(path string, secret *Secret, a *ClientAssertion, baseDir string, p *problems,
	read func(path, name string, limit int64, ok func([]byte) bool, want string) []byte) {
	if a.AssertionAudience != "" && a.PrivateKey == nil {
		p.add(path+".assertion_audience", "only with private_key")
	}
	n := count(secret.Inline != "", secret.File != "", a.PrivateKey != nil, a.ClientAssertionFile != "", a.TLS != nil)
	if n != 1 {
		p.add(path, "exactly one of client_secret, client_secret_file, private_key, client_assertion_file, tls")
		return
	}
	switch {
	case a.TLS != nil:
		t := a.TLS
		var cert, key []byte
		if t.CertFile == "" {
			p.add(path+".tls.cert_file", "is required")
		} else {
			t.CertPath = resolvePath(baseDir, t.CertFile)
			cert = read(path+".tls.cert_file", t.CertFile, maxKeyBytes, nil, "")
		}
		if t.KeyFile == "" {
			p.add(path+".tls.key_file", "is required")
		} else {
			t.KeyPath = resolvePath(baseDir, t.KeyFile)
			key = read(path+".tls.key_file", t.KeyFile, maxKeyBytes, nil, "")
		}
		if cert != nil && key != nil {
			if _, err := tls.X509KeyPair(cert, key); err != nil {
				p.add(path+".tls", "cert_file and key_file are not a matching PEM certificate and key")
			}
		}
		if t.CAFile != "" {
			t.CAPath = resolvePath(baseDir, t.CAFile)
			if ca := read(path+".tls.ca_file", t.CAFile, maxKeyBytes, nil, ""); ca != nil && !x509.NewCertPool().AppendCertsFromPEM(ca) {
				p.add(path+".tls.ca_file", "holds no PEM certificate")
			}
		}
	case a.PrivateKey != nil:
		k := a.PrivateKey
		if k.File == "" {
			p.add(path+".private_key.file", "is required")
			return
		}
		data := read(path+".private_key.file", k.File, maxKeyBytes, looksLikePrivateKey,
			"does not hold a PEM private key or a private JWK")
		if data == nil {
			return
		}
		key, err := jose.LoadSigningKey(data, k.Alg, k.Kid)
		if err != nil {
			// jose's errors never contain key material.
			p.add(path+".private_key.file", "%s", strings.TrimPrefix(err.Error(), "jose: "))
			return
		}
		k.Key = key
	case a.ClientAssertionFile != "":
		a.AssertionPath = resolvePath(baseDir, a.ClientAssertionFile)
	default:
		secret.resolve(path, "client_secret", true, baseDir, p)
	}
}

// looksLikePrivateKey is a shallow check that a key file holds a PEM private key block or a
// JSON object (a JWK), so that `validate` catches a wrong file; internal/jose parses it fully.
func looksLikePrivateKey(data []byte) bool {
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' && t[len(t)-1] == '}' {
		return true
	}
	for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
		if strings.HasSuffix(b.Type, "PRIVATE KEY") {
			return true
		}
	}
	return false
}

// resolvePath is name relative to baseDir (the configuration file's directory) unless absolute.
func resolvePath(baseDir, name string) string {
	if !filepath.IsAbs(name) && baseDir != "" {
		return filepath.Join(baseDir, name)
	}
	return name
}

// readFile reads a file named in the configuration, relative to baseDir. It refuses anything
// but a regular file (a FIFO or device would block or never end) and anything larger than
// limit. Its errors name the file, never its content.
func readFile(baseDir, name string, limit int64) ([]byte, error) {
	p := resolvePath(baseDir, name)
	q := strconv.Quote(p)
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		return nil, newFileError(q, err)
	case fi.IsDir():
		return nil, &fileError{msg: q + " is a directory"}
	case !fi.Mode().IsRegular():
		return nil, &fileError{msg: q + " is not a regular file"}
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, newFileError(q, err)
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, newFileError(q, err)
	}
	if int64(len(data)) > limit {
		return nil, &fileError{msg: fmt.Sprintf("%s is larger than %d bytes", q, limit)}
	}
	return data, nil
}

// fileError is a failure to read a file: its message names the file and the cause ("no such
// file or directory"), and it wraps the *fs.PathError when there is one.
type fileError struct {
	msg string
	err error
}

func (e *fileError) Error() string { return e.msg }
func (e *fileError) Unwrap() error { return e.err }

func newFileError(quoted string, err error) error {
	cause := err
	var pe *os.PathError
	if errors.As(err, &pe) {
		cause = pe.Err
	}
	return &fileError{msg: fmt.Sprintf("cannot read %s: %v", quoted, cause), err: err}
}
