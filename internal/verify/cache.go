package verify

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
)

// tokenCache is the verified-token cache: at most size Principals by the SHA-256 of their
// token, the least recently used evicted first. It is written for its memory (issue 11: up to
// cache.verified_tokens entries, 100,000 by default, must fit in well under 100 MiB of RSS): an
// entry is one allocation, its Principal with two list pointers (cacheEntry), plus one pointer
// in an open-addressing table about half full. A Go map keyed by [32]byte costs about 60 bytes
// per entry and golang-lru's element 96 more. Safe for concurrent use; a hit reorders the list,
// so every operation takes the one lock (as golang-lru's Get does).
//
// The table needs no hash function: a SHA-256 is uniformly distributed, so its first 8 bytes
// pick the slot, and linear probing compares the whole sum (Principal.TokenSum). Only verified
// tokens are ever inserted, and finding a token's slot costs at most the length of the run of
// occupied slots it lands in; the table is at most 3/4 full.
type tokenCache struct {
	mu    sync.Mutex
	size  int
	count int
	slots []*cacheEntry // len is a power of two, or 0 before the first Add
	// root is the list's sentinel: root.next is the most recently used, root.prev the least.
	root cacheEntry
}

// cacheEntry is a cached Principal and its place in the recency list. The Principal is
// shared with callers, read only; prev and next belong to the cache (under its lock).
type cacheEntry struct {
	Principal
	prev, next *cacheEntry
}

const minCacheSlots = 64

func newTokenCache(size int) *tokenCache {
	c := &tokenCache{size: size}
	c.root.prev, c.root.next = &c.root, &c.root
	return c
}

// home is the first slot a sum probes.
func (c *tokenCache) home(sum *[sha256.Size]byte) int {
	return int(binary.LittleEndian.Uint64(sum[:8]) & uint64(len(c.slots)-1))
}

// find returns the slot holding sum, or -1.
func (c *tokenCache) find(sum *[sha256.Size]byte) int {
	if len(c.slots) == 0 {
		return -1
	}
	mask := len(c.slots) - 1
	for i := c.home(sum); ; i = (i + 1) & mask {
		e := c.slots[i]
		if e == nil {
			return -1
		}
		if e.TokenSum == *sum {
			return i
		}
	}
}

// Get returns the Principal of the token whose SHA-256 is sum, and marks it used.
func (c *tokenCache) Get(sum [sha256.Size]byte) (*Principal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := c.find(&sum)
	if i < 0 {
		return nil, false
	}
	e := c.slots[i]
	c.unlink(e)
	c.pushFront(e)
	return &e.Principal, true
}

// Add caches e under e.TokenSum as the most recently used entry, replacing an entry of the
// same token, and evicts the least recently used entry beyond size.
func (c *tokenCache) Add(e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := c.find(&e.TokenSum); i >= 0 {
		c.unlink(c.slots[i])
		c.slots[i] = e
		c.pushFront(e)
		return
	}
	if c.count >= c.size {
		c.remove(c.root.prev)
	}
	if (c.count+1)*4 > len(c.slots)*3 {
		c.grow()
	}
	c.insert(e)
	c.count++
	c.pushFront(e)
}

// Remove drops the entry of sum, if any.
func (c *tokenCache) Remove(sum [sha256.Size]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := c.find(&sum); i >= 0 {
		c.remove(c.slots[i])
	}
}

// Len returns the number of entries.
func (c *tokenCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count
}

// Keys returns the keys from the most to the least recently used.
func (c *tokenCache) Keys() [][sha256.Size]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([][sha256.Size]byte, 0, c.count)
	for e := c.root.next; e != &c.root; e = e.next {
		keys = append(keys, e.TokenSum)
	}
	return keys
}

// insert puts e in the first free slot from its home (the table has one).
func (c *tokenCache) insert(e *cacheEntry) {
	mask := len(c.slots) - 1
	i := c.home(&e.TokenSum)
	for c.slots[i] != nil {
		i = (i + 1) & mask
	}
	c.slots[i] = e
}

// remove unlinks e and frees its slot, moving back the entries after it in the same run that
// could not be found past a hole (backward-shift deletion: no tombstones).
func (c *tokenCache) remove(e *cacheEntry) {
	c.unlink(e)
	c.count--
	mask := len(c.slots) - 1
	hole := c.find(&e.TokenSum)
	for j := (hole + 1) & mask; c.slots[j] != nil; j = (j + 1) & mask {
		// The entry at j may move to the hole unless its home lies cyclically in (hole, j].
		if h := c.home(&c.slots[j].TokenSum); (j-h)&mask >= (j-hole)&mask {
			c.slots[hole] = c.slots[j]
			hole = j
		}
	}
	c.slots[hole] = nil
}

// grow doubles the table (to minCacheSlots at first) and reinserts every entry.
func (c *tokenCache) grow() {
	old := c.slots
	c.slots = make([]*cacheEntry, max(minCacheSlots, 2*len(old)))
	for _, e := range old {
		if e != nil {
			c.insert(e)
		}
	}
}

func (c *tokenCache) unlink(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *tokenCache) pushFront(e *cacheEntry) {
	e.prev, e.next = &c.root, c.root.next
	c.root.next.prev = e
	c.root.next = e
}
