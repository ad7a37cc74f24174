package config

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
)

// Limits on files named by the configuration.
const (
	maxSecretBytes = 64 << 10
	maxKeyBytes    = 1 << 20
)

// resolveFiles reads every *_file of cfg, turns every secret source into its resolved form
// (Client.SecretHashes, Fetch.ResolvedSecret, Redis.ResolvedPassword, Redis.EncryptionKey,
// SigningKey.KeyData, TLS.CAData) and reports the problems of secret sources. It never puts a
// secret or a file's content in a message.
func resolveFiles(cfg *Config, baseDir string, p *problems) {
	if is := cfg.Issuer; is != nil {
		for i := range is.SigningKeys {
			k := &is.SigningKeys[i]
			if k.File == "" {
				continue
			}
			path := fmt.Sprintf("issuer.signing_keys[%d].file", i)
			data, err := readFile(baseDir, k.File, maxKeyBytes)
			if err != nil {
				p.add(path, "%s", err.Error())
				continue
			}
			if !looksLikePrivateKey(data) {
				p.add(path, "does not hold a PEM private key or a private JWK")
				continue
			}
			k.KeyData = data
		}
		for i := range is.Clients {
			resolveClient(&is.Clients[i], fmt.Sprintf("issuer.clients[%d]", i), baseDir, p)
		}
	}
	for i := range cfg.Routes {
		if f := cfg.Routes[i].Upstream.Fetch; f != nil {
			path := fmt.Sprintf("routes[%d].upstream.fetch", i)
			f.ResolvedSecret = resolveSecret(path, "client_secret", f.ClientSecret, f.ClientSecretFile, true, baseDir, p)
		}
	}
	if g := cfg.Server.GatewayTLS; g != nil {
		resolveGatewayTLS(g, baseDir, p)
	}
	if r := cfg.Cache.Redis; r != nil {
		r.ResolvedPassword = resolveSecret("cache.redis", "password", r.Password, r.PasswordFile, false, baseDir, p)
		if r.EncryptionKeyFile != "" {
			path := "cache.redis.encryption_key_file"
			data, err := readFile(baseDir, r.EncryptionKeyFile, maxSecretBytes)
			if err != nil {
				p.add(path, "%s", err.Error())
			} else if key := decodeEncryptionKey(data); key == nil {
				p.add(path, "must hold a 32-byte key: 32 raw bytes, 64 hex digits or base64 of 32 bytes")
			} else {
				r.EncryptionKey = key
			}
		}
		if r.TLS.CAFile != "" {
			path := "cache.redis.tls.ca_file"
			data, err := readFile(baseDir, r.TLS.CAFile, maxKeyBytes)
			if err != nil {
				p.add(path, "%s", err.Error())
			} else if !x509.NewCertPool().AppendCertsFromPEM(data) {
				p.add(path, "holds no PEM certificate")
			} else {
				r.TLS.CAData = data
			}
		}
	}
}

// resolveClient checks an issuer client's secret sources and fills SecretHashes.
func resolveClient(c *Client, path string, baseDir string, p *problems) {
	sources := 0
	for _, set := range []bool{c.ClientSecretHash != "", c.ClientSecretHashes != nil, c.ClientSecret != "", c.ClientSecretFile != ""} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		p.add(path, "exactly one of client_secret_hash, client_secret_hashes, client_secret, client_secret_file")
	}
	if c.ClientSecretHash != "" {
		if h, ok := parseSecretHash(c.ClientSecretHash); ok {
			c.SecretHashes = append(c.SecretHashes, h)
		} else {
			p.add(path+".client_secret_hash", "must be sha256: followed by 64 hex digits")
		}
	}
	if c.ClientSecretHashes != nil && len(c.ClientSecretHashes) == 0 {
		p.add(path+".client_secret_hashes", "must not be empty")
	}
	for j, s := range c.ClientSecretHashes {
		if h, ok := parseSecretHash(s); ok {
			c.SecretHashes = append(c.SecretHashes, h)
		} else {
			p.add(indexPath(path+".client_secret_hashes", j), "must be sha256: followed by 64 hex digits")
		}
	}
	if c.ClientSecret != "" {
		c.SecretHashes = append(c.SecretHashes, sha256.Sum256([]byte(c.ClientSecret)))
		weakSecret(path+".client_secret", c.ClientSecret, p)
	}
	if c.ClientSecretFile != "" {
		if s := readSecretFile(path+".client_secret_file", c.ClientSecretFile, baseDir, p); s != "" {
			c.SecretHashes = append(c.SecretHashes, sha256.Sum256([]byte(s)))
			weakSecret(path+".client_secret_file", s, p)
		}
	}
	if sources != 1 {
		c.SecretHashes = nil
	}
}

// minSecretLen is the shortest client secret that gets no warning: 16 characters of a random
// secret are about 96 bits; SECURITY-NOTES asks for 128-bit random secrets.
const minSecretLen = 16

// weakSecret warns about a client secret that is easy to guess (a placeholder left in a
// manifest works as a real credential). Its value is never quoted.
func weakSecret(path, secret string, p *problems) {
	if len(secret) < minSecretLen {
		p.warn(path, "the secret is shorter than %d characters; use a long random secret (openssl rand -base64 32)", minSecretLen)
	}
}

// resolveSecret returns the secret given inline as name or in the file named by name_file.
// Both at once is a problem; neither is one only when required.
func resolveSecret(path, name, inline, file string, required bool, baseDir string, p *problems) string {
	switch {
	case inline != "" && file != "" && required:
		p.add(path, "exactly one of %s, %s_file", name, name)
	case inline != "" && file != "":
		p.add(path, "at most one of %s, %s_file", name, name)
	case inline != "":
		return inline
	case file != "":
		return readSecretFile(path+"."+name+"_file", file, baseDir, p)
	case required:
		p.add(path, "exactly one of %s, %s_file", name, name)
	}
	return ""
}

// readSecretFile returns the content of a secret file without one trailing newline.
func readSecretFile(path, file, baseDir string, p *problems) string {
	data, err := readFile(baseDir, file, maxSecretBytes)
	if err != nil {
		p.add(path, "%s", err.Error())
		return ""
	}
	s := string(stripNewline(data))
	if s == "" {
		p.add(path, "file is empty")
	}
	return s
}

// stripNewline removes one trailing newline ("\n" or "\r\n"), as `echo secret > file` and
// Kubernetes secrets created from literal files leave one.
func stripNewline(b []byte) []byte {
	if bytes.HasSuffix(b, []byte("\r\n")) {
		return b[:len(b)-2]
	}
	return bytes.TrimSuffix(b, []byte("\n"))
}

// parseSecretHash parses "sha256:" followed by 64 hex digits (either case).
func parseSecretHash(s string) ([32]byte, bool) {
	var h [32]byte
	hexPart, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hexPart) != 64 {
		return h, false
	}
	if _, err := hex.Decode(h[:], []byte(hexPart)); err != nil {
		return h, false
	}
	return h, true
}

// decodeEncryptionKey accepts exactly 32 raw bytes, or, with one trailing newline ignored,
// 64 hex digits or the base64 (standard or URL alphabet, padded or not) of 32 bytes. Raw comes
// first and only at exactly 32 bytes, so the text forms (64 and 43/44 characters) never clash.
func decodeEncryptionKey(data []byte) []byte {
	if len(data) == 32 {
		return bytes.Clone(data)
	}
	s := string(stripNewline(data))
	if len(s) == 64 {
		if k, err := hex.DecodeString(s); err == nil {
			return k
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.Strict().DecodeString(s); err == nil && len(k) == 32 {
			return k
		}
	}
	return nil
}

// looksLikePrivateKey is a shallow check that a key file holds a PEM private key block or a
// JSON object (a JWK), so that `validate` catches a wrong file; internal/jose parses it fully.
func looksLikePrivateKey(data []byte) bool {
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' && t[len(t)-1] == '}' {
		return true
	}
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return false
		}
		if strings.HasSuffix(b.Type, "PRIVATE KEY") {
			return true
		}
	}
}

// resolveGatewayTLS checks that the gateway TLS files hold a usable key pair and CA
// certificates, and keeps their resolved paths: the server re-reads them when they change
// (certificate rotation), so their contents are not kept here.
func resolveGatewayTLS(g *GatewayTLS, baseDir string, p *problems) {
	const path = "server.gateway_tls"
	var certPEM, keyPEM []byte
	if g.CertFile != "" {
		g.CertPath = resolvePath(baseDir, g.CertFile)
		data, err := readFile(baseDir, g.CertFile, maxKeyBytes)
		if err != nil {
			p.add(path+".cert_file", "%s", err.Error())
		} else {
			certPEM = data
		}
	}
	if g.KeyFile != "" {
		g.KeyPath = resolvePath(baseDir, g.KeyFile)
		data, err := readFile(baseDir, g.KeyFile, maxKeyBytes)
		if err != nil {
			p.add(path+".key_file", "%s", err.Error())
		} else {
			keyPEM = data
		}
	}
	if certPEM != nil && keyPEM != nil {
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			// The parser's text may describe the key; say only what is wrong with the pair.
			p.add(path, "cert_file and key_file do not hold a matching PEM certificate and private key")
		}
	}
	if g.ClientCAFile != "" {
		g.ClientCAPath = resolvePath(baseDir, g.ClientCAFile)
		data, err := readFile(baseDir, g.ClientCAFile, maxKeyBytes)
		if err != nil {
			p.add(path+".client_ca_file", "%s", err.Error())
		} else if !x509.NewCertPool().AppendCertsFromPEM(data) {
			p.add(path+".client_ca_file", "holds no PEM certificate")
		}
	}
}
