// Package secrets reads the secret-bearing values of the configuration: the client_secret_hash
// format ("sha256:" and 64 hex digits) and the Redis encryption key. The configuration loader,
// the issuer, `tokengate hash-secret` and the Redis store all use these, so a value accepted by
// one is accepted by all. Error texts never repeat the value.
package secrets

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
)

// hashPrefix starts every client_secret_hash value. It is matched exactly (lower case): the
// value is a token of tokengate's own format, not a case-insensitive scheme name.
const hashPrefix = "sha256:"

// Errors of ParseHash and DecodeEncryptionKey. Fixed texts: they never quote the value.
var (
	ErrHash          = errors.New(`secret hash must be "sha256:" followed by 64 hex digits`)
	ErrEncryptionKey = errors.New("encryption key must be 32 bytes: 32 raw bytes, 64 hex digits or base64 of 32 bytes")
)

// Hash returns the client_secret_hash value of secret: "sha256:" and the lower-case hex SHA-256
// of its bytes, as `tokengate hash-secret` prints it. It hashes exactly what it is given: the
// caller strips the one trailing newline of a secret read from stdin or a file.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hashPrefix + hex.EncodeToString(sum[:])
}

// ParseHash reads a client_secret_hash value: "sha256:" (exactly, lower case) followed by 64
// hex digits of either case, nothing around it. It returns the SHA-256 digest.
func ParseHash(s string) ([32]byte, error) {
	var out [32]byte
	rest, ok := strings.CutPrefix(s, hashPrefix)
	if !ok || len(rest) != 2*len(out) {
		return [32]byte{}, ErrHash
	}
	if _, err := hex.Decode(out[:], []byte(rest)); err != nil {
		return [32]byte{}, ErrHash
	}
	return out, nil
}

// DecodeEncryptionKey reads the 32-byte AES-256 key of cache.redis.encryption_key_file from the
// file's contents: exactly 32 raw bytes, or, with one trailing newline ("\n" or "\r\n")
// ignored, 64 hex digits or the base64 (standard or URL alphabet, padded or not, strict) of 32
// bytes. Raw comes first and only at exactly 32 bytes, so the text forms (64 and 43/44
// characters) never clash with it. The returned slice is the caller's own.
func DecodeEncryptionKey(data []byte) ([]byte, error) {
	if len(data) == 32 {
		return bytes.Clone(data), nil
	}
	s := string(stripNewline(data))
	if len(s) == 64 {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.Strict().DecodeString(s); err == nil && len(k) == 32 {
			return k, nil
		}
	}
	return nil, ErrEncryptionKey
}

// stripNewline removes one trailing "\n" or "\r\n", as an editor or `echo` leaves it.
func stripNewline(b []byte) []byte {
	if bytes.HasSuffix(b, []byte("\r\n")) {
		return b[:len(b)-2]
	}
	return bytes.TrimSuffix(b, []byte("\n"))
}
