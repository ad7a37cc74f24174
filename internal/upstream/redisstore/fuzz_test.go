package redisstore

import (
	"bytes"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/upstream"
)

// FuzzDecode: a value read from Redis is untrusted input; decoding never panics, and with an
// encryption key only values sealed under that key and name are accepted.
func FuzzDecode(f *testing.F) {
	plain, _ := New(Options{Addr: "127.0.0.1:1"})
	sealed, _ := New(Options{Addr: "127.0.0.1:1", EncryptionKey: bytes.Repeat([]byte{1}, 32)})
	defer plain.Close()
	defer sealed.Close()
	now := time.Unix(1_800_000_000, 0)
	tok := upstream.Token{AccessToken: "abc.def", IssuedAt: now, Expiry: now.Add(time.Hour)}
	p, _ := plain.seal("k", encode(tok))
	s, _ := sealed.seal("k", encode(tok))
	f.Add(p)
	f.Add(s)
	f.Add([]byte{})
	f.Add([]byte{formatPlain})
	f.Add([]byte{formatSealed, 1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, ok := decode(plain.open("k", b)); ok && (got.AccessToken == "" || !got.IssuedAt.Before(got.Expiry)) {
			t.Fatalf("accepted an invalid token %+v", got)
		}
		// Only a value we sealed ourselves can open, and the fuzzer only ever saw ours for tok.
		if got, ok := decode(sealed.open("k", b)); ok && (got.AccessToken != tok.AccessToken || !got.Expiry.Equal(tok.Expiry)) {
			t.Fatalf("accepted a forged value: %+v", got)
		}
		if _, ok := decode(sealed.open("other-key", b)); ok {
			t.Fatal("a value opened under another key name")
		}
	})
}
