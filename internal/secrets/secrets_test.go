package secrets

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
)

// TestHash: the client_secret_hash format round-trips and rejects malformed values without
// echoing them (the cases of the issuer's and the configuration's former copies).
func TestHash(t *testing.T) {
	h := Hash("my-secret")
	if !strings.HasPrefix(h, "sha256:") || len(h) != 7+64 || strings.ToLower(h) != h {
		t.Fatalf("Hash = %q", h)
	}
	// Known answer: sha256("abc").
	if got := Hash("abc"); got != "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("Hash(abc) = %q", got)
	}
	want := sha256.Sum256([]byte("abc"))
	if d, err := ParseHash(Hash("abc")); err != nil || d != want {
		t.Fatalf("round trip: %v", err)
	}
	if d, err := ParseHash("sha256:" + strings.ToUpper(Hash("abc")[7:])); err != nil || d != want {
		t.Errorf("upper-case hex: %v", err)
	}
	hexPart := Hash("abc")[7:]
	for _, bad := range []string{"", "sha256:", "sha256:abc", strings.ToUpper(hexPart), "SHA256:" + hexPart, "Sha256:" + hexPart,
		"sha512:" + hexPart, "sha256:" + strings.Repeat("g", 64), Hash("abc") + "00", " " + Hash("abc"), Hash("abc") + "\n"} {
		d, err := ParseHash(bad)
		if err == nil {
			t.Errorf("accepted %q", bad)
			continue
		}
		if d != ([32]byte{}) {
			t.Errorf("%q: a digest returned with the error", bad)
		}
		if len(bad) > 10 && strings.Contains(err.Error(), bad[7:]) {
			t.Errorf("error echoes the value: %v", err)
		}
	}
}

// TestDecodeEncryptionKey: the encodings of the Redis encryption key (the cases of the
// configuration's and the Redis store's former copies).
func TestDecodeEncryptionKey(t *testing.T) {
	raw := []byte("0123456789abcdef0123456789ABCDEF") // 32 bytes, a test value
	ab := bytes.Repeat([]byte{0xab}, 32)
	tests := []struct {
		name    string
		content string
		want    []byte // nil: refused
	}{
		{"raw", string(raw), raw},
		{"raw ending in a newline byte", string(raw[:31]) + "\n", append(bytes.Clone(raw[:31]), '\n')},
		{"raw 0xab", string(ab), ab},
		{"hex", "3031323334353637383961626364656630313233343536373839414243444546", raw},
		{"hex newline", "3031323334353637383961626364656630313233343536373839414243444546\n", raw},
		{"hex crlf", "3031323334353637383961626364656630313233343536373839414243444546\r\n", raw},
		{"hex 0xab newline", fmt.Sprintf("%x\n", ab), ab},
		{"base64", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlBQkNERUY=\n", raw},
		{"base64 raw url", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlBQkNERUY", raw},
		{"base64 0xab", "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n", ab},
		{"base64 0xab unpadded", "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s", ab},
		{"31 bytes", string(raw[:31]), nil},
		{"33 bytes", string(raw) + "x", nil},
		{"too short", "too short", nil},
		{"64 non-hex", strings.Repeat("z", 64), nil},
		{"hex of 16 bytes", "30313233343536373839616263646566\n", nil},
		{"base64 of 31 bytes", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlBQkNERQ==", nil},
		{"two newlines", "3031323334353637383961626364656630313233343536373839414243444546\n\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := DecodeEncryptionKey([]byte(tt.content))
			if tt.want == nil {
				if err == nil {
					t.Fatalf("accepted: %x", k)
				}
				if err != ErrEncryptionKey {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil || !bytes.Equal(k, tt.want) {
				t.Fatalf("= %x, %v; want %x", k, err, tt.want)
			}
		})
	}
	// The result is the caller's own: changing it does not change the input.
	in := bytes.Clone(raw)
	k, _ := DecodeEncryptionKey(in)
	k[0] ^= 0xff
	if !bytes.Equal(in, raw) {
		t.Fatal("the key aliases the input")
	}
}
