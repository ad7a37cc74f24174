package verify

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// cacheModel is the reference the tokenCache must behave as: an LRU list of keys, most
// recently used first.
type cacheModel struct {
	size int
	keys [][sha256.Size]byte
}

func (m *cacheModel) get(k [sha256.Size]byte) bool {
	i := slices.Index(m.keys, k)
	if i < 0 {
		return false
	}
	m.keys = slices.Insert(slices.Delete(m.keys, i, i+1), 0, k)
	return true
}

func (m *cacheModel) add(k [sha256.Size]byte) {
	if i := slices.Index(m.keys, k); i >= 0 {
		m.keys = slices.Delete(m.keys, i, i+1)
	}
	m.keys = slices.Insert(m.keys, 0, k)
	if len(m.keys) > m.size {
		m.keys = m.keys[:m.size]
	}
}

func (m *cacheModel) remove(k [sha256.Size]byte) {
	if i := slices.Index(m.keys, k); i >= 0 {
		m.keys = slices.Delete(m.keys, i, i+1)
	}
}

// testSum returns a key whose home slot (its first 8 bytes) is one of few values when crowd is
// set, so that runs of occupied slots, wrap-around and backward-shift deletion are exercised.
func testSum(i int, crowd bool) [sha256.Size]byte {
	k := sha256.Sum256(binary.LittleEndian.AppendUint64(nil, uint64(i)))
	if crowd {
		binary.LittleEndian.PutUint64(k[:8], uint64(i%5)*13+uint64(^uint64(0)>>1)) // near the table's end too
	}
	return k
}

// TestTokenCacheMatchesLRU runs random Gets, Adds and Removes against the model, for several
// sizes, with spread and crowded keys: the same hits, the same contents in the same recency
// order, and every entry findable after each operation.
func TestTokenCacheMatchesLRU(t *testing.T) {
	for _, size := range []int{1, 2, 3, 7, 48, 200} {
		for _, crowd := range []bool{false, true} {
			rng := rand.New(rand.NewPCG(uint64(size), 1))
			c := newTokenCache(size)
			m := &cacheModel{size: size}
			for step := range 5000 {
				k := testSum(rng.IntN(3*size+3), crowd)
				switch op := rng.IntN(10); {
				case op < 4:
					p, hit := c.Get(k)
					if hit != m.get(k) || (hit && p.TokenSum != k) {
						t.Fatalf("size %d crowd %v step %d: Get hit=%v, model disagrees", size, crowd, step, hit)
					}
				case op < 9:
					c.Add(&cacheEntry{Principal: Principal{TokenSum: k}})
					m.add(k)
				default:
					c.Remove(k)
					m.remove(k)
				}
				if !slices.Equal(c.Keys(), m.keys) || c.Len() != len(m.keys) {
					t.Fatalf("size %d crowd %v step %d: keys differ from the LRU model (%d vs %d)", size, crowd, step, c.Len(), len(m.keys))
				}
				for _, k := range m.keys {
					if c.find(&k) < 0 {
						t.Fatalf("size %d crowd %v step %d: an entry cannot be found", size, crowd, step)
					}
				}
				if len(c.slots) > 0 && c.count*4 > len(c.slots)*3 {
					t.Fatalf("table %d/%d more than 3/4 full", c.count, len(c.slots))
				}
			}
		}
	}
}

// Adding the same token again replaces its entry: a caller holding the old Principal keeps it
// intact, and the cache serves the new one.
func TestTokenCacheReplace(t *testing.T) {
	c := newTokenCache(2)
	k := testSum(1, false)
	old := &cacheEntry{Principal: Principal{TokenSum: k, Subject: "old"}}
	c.Add(old)
	held, _ := c.Get(k)
	c.Add(&cacheEntry{Principal: Principal{TokenSum: k, Subject: "new"}})
	if p, ok := c.Get(k); !ok || p.Subject != "new" || c.Len() != 1 {
		t.Fatalf("after replacing: %v %v len %d", p, ok, c.Len())
	}
	if held.Subject != "old" || held.TokenSum != k {
		t.Fatal("a Principal handed out was changed")
	}
}

// Concurrent Gets, Adds and Removes (run with -race): the list and table stay consistent.
func TestTokenCacheConcurrent(t *testing.T) {
	c := newTokenCache(64)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 2))
			for range 2000 {
				k := testSum(rng.IntN(100), g%2 == 0)
				switch rng.IntN(3) {
				case 0:
					if p, ok := c.Get(k); ok && (p.TokenSum != k || p.Subject != "s") {
						t.Error("wrong entry")
						return
					}
				case 1:
					c.Add(&cacheEntry{Principal: Principal{TokenSum: k, Subject: "s"}})
				default:
					c.Remove(k)
				}
			}
		})
	}
	wg.Wait()
	keys := c.Keys()
	if len(keys) != c.Len() || len(keys) > 64 {
		t.Fatalf("%d keys, Len %d", len(keys), c.Len())
	}
	for _, k := range keys {
		if _, ok := c.Get(k); !ok {
			t.Fatal("a listed key cannot be found")
		}
	}
}
