package redisstore

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokengate/tokengate/internal/testkit"
	"github.com/tokengate/tokengate/internal/upstream"
)

// TestSharedClaimFirstWriterWins: of two replicas claiming one jti, exactly one is first, and the
// claim lapses with its window (RFC 9449 §11.1).
func TestSharedClaimFirstWriterWins(t *testing.T) {
	r := testkit.StartRedis(t)
	key := bytes.Repeat([]byte{7}, 32)
	for _, tc := range []struct {
		name string
		enc  []byte
	}{{"plain", nil}, {"sealed", key}} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := New(Options{Addr: r.Addr(), EncryptionKey: tc.enc, KeyPrefix: "t-" + tc.name + ":"})
			b, _ := New(Options{Addr: r.Addr(), EncryptionKey: tc.enc, KeyPrefix: "t-" + tc.name + ":"})
			t.Cleanup(func() { a.Close(); b.Close() })
			ctx := context.Background()
			k := string(bytes.Repeat([]byte{1}, 32))
			first, err := a.Claim(ctx, "jti:", k, time.Now().Add(150*time.Millisecond))
			if err != nil || !first {
				t.Fatalf("replica A: first=%v err=%v, want first", first, err)
			}
			first, err = b.Claim(ctx, "jti:", k, time.Now().Add(time.Second))
			if err != nil || first {
				t.Fatalf("replica B: first=%v err=%v, want taken", first, err)
			}
			time.Sleep(300 * time.Millisecond)
			if first, err = b.Claim(ctx, "jti:", k, time.Now().Add(time.Second)); err != nil || !first {
				t.Fatalf("after the window: first=%v err=%v, want first", first, err)
			}
		})
	}
}

// TestSharedValues: a value saved by one replica is read by another, sealed with the key name as
// additional data when there is an encryption key, and a value planted in clear is ignored then.
func TestSharedValues(t *testing.T) {
	r := testkit.StartRedis(t)
	ctx := context.Background()
	k := string(bytes.Repeat([]byte{2}, 32))
	enc := bytes.Repeat([]byte{9}, 32)
	a, _ := New(Options{Addr: r.Addr(), EncryptionKey: enc})
	b, _ := New(Options{Addr: r.Addr(), EncryptionKey: enc})
	plain, _ := New(Options{Addr: r.Addr()})
	t.Cleanup(func() { a.Close(); b.Close(); plain.Close() })
	if !a.Sealed() || plain.Sealed() {
		t.Fatal("Sealed() wrong")
	}
	if _, ok, err := b.LoadValue(ctx, "intro:", k); ok || err != nil {
		t.Fatalf("empty store: ok=%v err=%v", ok, err)
	}
	if err := a.SaveValue(ctx, "intro:", k, []byte(`{"active":true}`), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	v, ok, err := b.LoadValue(ctx, "intro:", k)
	if err != nil || !ok || string(v) != `{"active":true}` {
		t.Fatalf("replica B read %q ok=%v err=%v", v, ok, err)
	}
	raw, _ := a.rdb.Get(ctx, a.name("intro:", upstream.Key(k))).Bytes()
	if bytes.Contains(raw, []byte("active")) {
		t.Fatal("sealed value stored in clear")
	}
	// Planted in clear under the name a sealed store would use: ignored.
	a.rdb.Set(ctx, a.name("intro:", upstream.Key(k)), append([]byte{formatPlain}, `{"active":true}`...), time.Minute)
	if _, ok, _ := b.LoadValue(ctx, "intro:", k); ok {
		t.Fatal("a plaintext value was accepted by a sealed store")
	}
	// Moved to another key: the additional data no longer matches.
	k2 := string(bytes.Repeat([]byte{3}, 32))
	_ = a.SaveValue(ctx, "intro:", k, []byte("x"), time.Now().Add(time.Minute))
	moved, _ := a.rdb.Get(ctx, a.name("intro:", upstream.Key(k))).Bytes()
	a.rdb.Set(ctx, a.name("intro:", upstream.Key(k2)), moved, time.Minute)
	if _, ok, _ := b.LoadValue(ctx, "intro:", k2); ok {
		t.Fatal("a value moved to another key was accepted")
	}
	// Past its time: not written.
	if err := a.SaveValue(ctx, "intro:", k2, []byte("y"), time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
}

// TestSharedDown: with Redis gone every call fails (then fast, ErrStoreDown), never blocks.
func TestSharedDown(t *testing.T) {
	r := testkit.StartRedis(t)
	s, _ := New(Options{Addr: r.Addr(), Timeout: 100 * time.Millisecond, RetryInterval: time.Minute})
	t.Cleanup(func() { s.Close() })
	r.Kill()
	ctx := context.Background()
	k := string(bytes.Repeat([]byte{4}, 32))
	if _, err := s.Claim(ctx, "jti:", k, time.Now().Add(time.Second)); err == nil {
		t.Fatal("Claim with Redis down: no error")
	}
	start := time.Now()
	if _, err := s.Claim(ctx, "jti:", k, time.Now().Add(time.Second)); !errors.Is(err, upstream.ErrStoreDown) {
		t.Fatalf("Claim during the outage: %v, want ErrStoreDown", err)
	}
	if _, _, err := s.LoadValue(ctx, "intro:", k); !errors.Is(err, upstream.ErrStoreDown) {
		t.Fatalf("LoadValue during the outage: %v", err)
	}
	if err := s.SaveValue(ctx, "intro:", k, []byte("v"), time.Now().Add(time.Second)); !errors.Is(err, upstream.ErrStoreDown) {
		t.Fatalf("SaveValue during the outage: %v", err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("fail-fast calls took %v", d)
	}
}
