package issuer

import (
	"testing"

	"github.com/tokengate/tokengate/internal/secrets"
)

// TestHashSecretAuthenticates: a secret stored as the client_secret_hash `tokengate
// hash-secret` prints (secrets.Hash, read back by secrets.ParseHash) authenticates exactly that
// secret, not one with a trailing newline. The format itself is tested in internal/secrets.
func TestHashSecretAuthenticates(t *testing.T) {
	d, err := secrets.ParseHash(secrets.Hash("from-hash-secret"))
	if err != nil {
		t.Fatal(err)
	}
	if d != DigestSecret("from-hash-secret") {
		t.Fatal("ParseHash(Hash(s)) is not DigestSecret(s)")
	}
	cfg := testConfig("https://tg.example.com")
	cfg.Clients[0].SecretHashes = [][32]byte{d}
	iss, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !iss.secretMatches(iss.clients[svcID], "from-hash-secret") || iss.secretMatches(iss.clients[svcID], "from-hash-secret\n") {
		t.Error("the hash-secret digest does not authenticate exactly its secret")
	}
}
