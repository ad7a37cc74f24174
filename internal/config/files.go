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

// files reads the secrets and files of a configuration, relative to baseDir, into their
// resolved form and reports their problems, never with a secret or a file's content.
type files struct {
	*problems
	baseDir string
}

func resolveFiles(cfg *Config, baseDir string, p *problems) {
	f := &files{p, baseDir}
	if is := cfg.Issuer; is != nil {
		for i := range is.SigningKeys {
			k := &is.SigningKeys[i]
			k.KeyData = f.read(indexPath("issuer.signing_keys", i)+".file", k.File, maxKeyBytes, privateKey)
		}
		for i := range is.Clients {
			f.client(&is.Clients[i], indexPath("issuer.clients", i))
		}
	}
	for i := range cfg.Providers {
		if in := cfg.Providers[i].Introspection; in != nil {
			f.clientAuth(indexPath("providers", i)+".introspection", &in.ClientSecret, &in.ClientAssertion)
		}
	}
	for i := range cfg.Routes {
		path, u := indexPath("routes", i)+".upstream", &cfg.Routes[i].Upstream
		if u.Fetch != nil {
			f.clientAuth(path+".fetch", &u.Fetch.ClientSecret, &u.Fetch.ClientAssertion)
		}
		if te := u.TokenExchange; te != nil {
			f.clientAuth(path+".token_exchange", &te.ClientSecret, &te.ClientAssertion)
		}
	}
	if g := cfg.Server.GatewayTLS; g != nil {
		// The server re-reads the files when they change (rotation): only paths are kept.
		g.CertPath, g.KeyPath = f.path(g.CertFile), f.path(g.KeyFile)
		f.keyPair("server.gateway_tls", g.CertFile, g.KeyFile, false,
			"cert_file and key_file do not hold a matching PEM certificate and private key")
		g.ClientCAPath = f.path(g.ClientCAFile)
		f.read("server.gateway_tls.client_ca_file", g.ClientCAFile, maxKeyBytes, certificates)
	}
	if r := cfg.Cache.Redis; r != nil {
		r.Password.resolve("cache.redis", "password", f)
		f.read("cache.redis.encryption_key_file", r.EncryptionKeyFile, maxSecretBytes, func(data []byte) string {
			var err error
			if r.EncryptionKey, err = secrets.DecodeEncryptionKey(data); err != nil {
				return "must hold a 32-byte key: 32 raw bytes, 64 hex digits or base64 of 32 bytes"
			}
			return ""
		})
		r.TLS.CAData = f.read("cache.redis.tls.ca_file", r.TLS.CAFile, maxKeyBytes, certificates)
	}
}

// read returns the file name ("" is none), or nil after reporting why it cannot be read or,
// when check refuses its content, what it should hold.
func (f *files) read(path, name string, limit int64, check func([]byte) string) []byte {
	if name == "" {
		return nil
	}
	data, err := readFile(f.baseDir, name, limit)
	if err != nil {
		f.add(path, "%s", err.Error())
		return nil
	}
	if want := ""; check != nil {
		if want = check(data); want != "" {
			f.add(path, "%s", want)
			return nil
		}
	}
	return data
}

// keyPair reads the PEM certificate and key files at path, reporting mismatch when they are
// not a pair: the parser's text may describe the key.
func (f *files) keyPair(path, certFile, keyFile string, required bool, mismatch string) {
	var pair [2][]byte
	for i, file := range [2][2]string{{".cert_file", certFile}, {".key_file", keyFile}} {
		if file[1] == "" && required {
			f.add(path+file[0], "is required")
		}
		pair[i] = f.read(path+file[0], file[1], maxKeyBytes, nil)
	}
	if _, err := tls.X509KeyPair(pair[0], pair[1]); pair[0] != nil && pair[1] != nil && err != nil {
		f.add(path, "%s", mismatch)
	}
}

// path is name resolved against the configuration's directory ("" stays "").
func (f *files) path(name string) string {
	if name == "" {
		return ""
	}
	return resolvePath(f.baseDir, name)
}

func certificates(data []byte) string {
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return "holds no PEM certificate"
	}
	return ""
}

// privateKey is a shallow check that a key file holds a PEM private key block or a JSON object
// (a JWK), so that `validate` catches a wrong file; internal/jose parses it fully.
func privateKey(data []byte) string {
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' && t[len(t)-1] == '}' {
		return ""
	}
	for b, rest := pem.Decode(data); b != nil; b, rest = pem.Decode(rest) {
		if strings.HasSuffix(b.Type, "PRIVATE KEY") {
			return ""
		}
	}
	return "does not hold a PEM private key or a private JWK"
}

// client checks an issuer client's secret sources and fills SecretHashes.
func (f *files) client(c *Client, path string) {
	sources := count(c.ClientSecretHash != "", c.ClientSecretHashes != nil, c.ClientSecret.Inline != "",
		c.ClientSecret.File != "", c.JWKS != nil, c.JWKSURI != "")
	if sources != 1 {
		f.add(path, "exactly one of client_secret_hash, client_secret_hashes, client_secret, "+
			"client_secret_file, jwks, jwks_uri")
	}
	hash := func(path, s string) {
		if h, err := secrets.ParseHash(s); err == nil {
			c.SecretHashes = append(c.SecretHashes, h)
		} else {
			f.add(path, "must be sha256: followed by 64 hex digits")
		}
	}
	if c.ClientSecretHash != "" {
		hash(path+".client_secret_hash", c.ClientSecretHash)
	}
	if c.ClientSecretHashes != nil && len(c.ClientSecretHashes) == 0 {
		f.add(path+".client_secret_hashes", "must not be empty")
	}
	for j, s := range c.ClientSecretHashes {
		hash(indexPath(path+".client_secret_hashes", j), s)
	}
	cs := &c.ClientSecret
	if (cs.Inline != "") != (cs.File != "") && cs.resolve(path, "client_secret", f) {
		c.SecretHashes = append(c.SecretHashes, sha256.Sum256([]byte(cs.value)))
		if len(cs.value) < minSecretLen {
			// A placeholder left in a manifest works as a real credential.
			key := ".client_secret_file"
			if cs.Inline != "" {
				key = ".client_secret"
			}
			f.warn(path+key, "the secret is shorter than %d characters; use a long random secret "+
				"(openssl rand -base64 32)", minSecretLen)
		}
		cs.value = "" // the issuer needs only the hash
	}
	if sources != 1 {
		c.SecretHashes = nil
	}
}

// resolve fills s.value from the inline value or the file; path is the enclosing mapping and
// name the key. It reports whether there is a secret.
func (s *Secret) resolve(path, name string, f *files) bool {
	switch {
	case s.Inline != "" && s.File != "":
		f.add(path, "at most one of %s, %s_file", name, name)
	case s.Inline != "":
		s.value = s.Inline
	case s.File != "":
		data, err := readFile(f.baseDir, s.File, maxSecretBytes)
		if err != nil {
			f.add(path+"."+name+"_file", "%s", err.Error())
			return false
		}
		// One trailing newline, as `echo secret > file` and Kubernetes secrets leave one.
		s.value = string(data)
		if v, ok := strings.CutSuffix(s.value, "\n"); ok {
			s.value = strings.TrimSuffix(v, "\r")
		}
		if s.value == "" {
			f.add(path+"."+name+"_file", "file is empty")
		}
	}
	return s.value != ""
}

// clientAuth resolves how tokengate's client authenticates at an IdP: exactly one of a client
// secret (inline or file), a private key (parsed here, so a key that does not parse is a load
// error naming the field), a client assertion file (only its path: it is read anew for every
// request, RFC 7521 §4.2, and may not exist yet at start-up) or a TLS client certificate
// (RFC 8705 §2; only paths are kept, the files are re-read when they change).
func (f *files) clientAuth(path string, secret *Secret, a *ClientAssertion) {
	if a.AssertionAudience != "" && a.PrivateKey == nil {
		f.add(path+".assertion_audience", "only with private_key")
	}
	if count(secret.Inline != "", secret.File != "", a.PrivateKey != nil, a.ClientAssertionFile != "", a.TLS != nil) != 1 {
		f.add(path, "exactly one of client_secret, client_secret_file, private_key, client_assertion_file, tls")
		return
	}
	switch k, t := a.PrivateKey, a.TLS; {
	case t != nil:
		t.CertPath, t.KeyPath, t.CAPath = f.path(t.CertFile), f.path(t.KeyFile), f.path(t.CAFile)
		f.keyPair(path+".tls", t.CertFile, t.KeyFile, true, "cert_file and key_file are not a matching PEM certificate and key")
		f.read(path+".tls.ca_file", t.CAFile, maxKeyBytes, certificates)
	case k != nil && k.File == "":
		f.add(path+".private_key.file", "is required")
	case k != nil:
		data := f.read(path+".private_key.file", k.File, maxKeyBytes, privateKey)
		if data == nil {
			return
		}
		key, err := jose.LoadSigningKey(data, k.Alg, k.Kid)
		if err != nil {
			// jose's errors never contain key material.
			f.add(path+".private_key.file", "%s", strings.TrimPrefix(err.Error(), "jose: "))
			return
		}
		k.Key = key
	case a.ClientAssertionFile != "":
		a.AssertionPath = f.path(a.ClientAssertionFile)
	default:
		secret.resolve(path, "client_secret", f)
	}
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
