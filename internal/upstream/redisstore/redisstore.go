// Package redisstore is the Redis-backed upstream.Store: the upstream-token cache shared by the
// replicas of a tokengate fleet (docs/upstream.md#scale-out-replicas-share-tokens-through-redis),
// so that N replicas make one IdP call per token, even when they all ask at the same moment.
//
// Design:
//   - Values live under KeyPrefix+"tok:"+H and locks under KeyPrefix+"lock:"+H, where H is the
//     hex of the upstream cache key (itself a SHA-256 of what selects the token, never a secret);
//     with an encryption key, H is an HMAC of it under a key derived from the encryption key, so
//     key names reveal nothing that can be checked offline against guessed credentials.
//   - A value expires with its token (PX = expiry - now).
//   - With an encryption key (32 bytes) values are sealed with AES-256-GCM, the key name as
//     additional data (a value cannot be moved to another key), and unsealed or plaintext values
//     are ignored: someone with write access to Redis cannot inject a token. Without one, the
//     token is stored in clear and a warning is logged: an upstream token is a bearer credential.
//   - The fleet-wide single flight is a lease: SET lock owner NX PX ttl, renewed by its holder
//     every ttl/3 while it fetches, released only by its owner (compare-and-delete script). A
//     holder that dies stops renewing; its lease lapses and another replica takes over. A lock key
//     without an expiry (planted by someone with Redis access, or a TTL lost by Redis) is no lease:
//     the next TryLock takes it over in the same script, so it can never block a route
//     (docs/upstream.md#scale-out-replicas-share-tokens-through-redis). A lock with an expiry but
//     held past the route's timeout is the upstream cache's concern: its waiter stops waiting and
//     fetches itself.
//   - Every call has its own timeout. After a failure the store answers ErrStoreDown at once for
//     RetryInterval (the upstream cache then fetches locally), logs the outage once, and logs
//     again when Redis answers; readiness never depends on Redis.
package redisstore

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/tokengate/tokengate/internal/defaults"
	"github.com/tokengate/tokengate/internal/metrics"
	"github.com/tokengate/tokengate/internal/upstream"
)

// Defaults for zero Options fields; the key prefix's is defaults.RedisKeyPrefix.
const (
	DefaultTimeout       = 250 * time.Millisecond
	DefaultLockTTL       = time.Second
	DefaultRetryInterval = time.Second
)

// Options are plain connection and behaviour settings (the lead maps cache.redis to them).
// Exactly one of Addr, SentinelAddrs (with MasterName) and ClusterAddrs is set.
type Options struct {
	Addr          string
	SentinelAddrs []string
	MasterName    string
	ClusterAddrs  []string

	Username string
	Password string
	DB       int

	TLS bool
	// CAPEM is the PEM bundle of CAs that verify the server: the contents of cache.redis.tls
	// ca_file as the configuration read and checked it (config.Redis.TLS.CAData), so the file
	// is read once. Empty = system roots.
	CAPEM      []byte
	ServerName string // overrides the name checked in the server's certificate

	KeyPrefix     string // default defaults.RedisKeyPrefix
	EncryptionKey []byte // 32 bytes (secrets.DecodeEncryptionKey); empty = values stored in clear (warned)

	Timeout       time.Duration // bound on every Redis call (dial, read, write); default 250 ms
	LockTTL       time.Duration // lease of the fetch lock; default 1 s
	RetryInterval time.Duration // after a failure, fail fast this long before trying Redis again; default 1 s

	Logger  *slog.Logger
	Metrics *metrics.Metrics
	Now     func() time.Time // the token clock (for TTLs); default time.Now
}

// Store implements upstream.Store on Redis. Safe for concurrent use.
type Store struct {
	rdb       redis.UniversalClient
	prefix    string
	aead      cipher.AEAD // nil: plaintext
	nameKey   []byte      // HMAC key for key names; nil: plain hex
	timeout   time.Duration
	lockTTL   time.Duration
	retry     time.Duration
	log       *slog.Logger
	m         *metrics.Metrics
	now       func() time.Time
	lockScr   *redis.Script
	unlockScr *redis.Script
	renewScr  *redis.Script

	mu      sync.Mutex
	down    bool
	retryAt time.Time // wall clock
}

var (
	_ upstream.Store  = (*Store)(nil)
	_ upstream.Shared = (*Store)(nil)
)

// New builds a Store. It does not contact Redis (readiness must not depend on it); the first
// use does. Close releases its connections.
func New(opts Options) (*Store, error) {
	s := &Store{
		prefix:  opts.KeyPrefix,
		timeout: opts.Timeout,
		lockTTL: opts.LockTTL,
		retry:   opts.RetryInterval,
		log:     opts.Logger,
		m:       opts.Metrics,
		now:     opts.Now,
		// KEYS[1] lock, ARGV[1] owner, ARGV[2] ttl ms: take the lease if free (1), or if the key
		// has no expiry (PTTL -1: not a lease, it would block forever) override it (2); 0: held.
		// One script, so that of many waiters exactly one takes an abandoned lock over.
		lockScr: redis.NewScript(`if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then return 1 end
if redis.call("PTTL", KEYS[1]) == -1 then redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2]) return 2 end
return 0`),
		// KEYS[1] lock, ARGV[1] owner: delete only our own lock.
		unlockScr: redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`),
		// KEYS[1] lock, ARGV[1] owner, ARGV[2] ttl ms: extend only our own lease.
		renewScr: redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) else return 0 end`),
	}
	if s.prefix == "" {
		s.prefix = defaults.RedisKeyPrefix
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.lockTTL <= 0 {
		s.lockTTL = DefaultLockTTL
	}
	if s.retry <= 0 {
		s.retry = DefaultRetryInterval
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if len(opts.EncryptionKey) > 0 {
		if len(opts.EncryptionKey) != 32 {
			return nil, errors.New("redis: encryption key must be 32 bytes")
		}
		block, err := aes.NewCipher(opts.EncryptionKey)
		if err != nil {
			return nil, fmt.Errorf("redis: encryption key: %w", err)
		}
		if s.aead, err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("redis: encryption key: %w", err)
		}
		h := hmac.New(sha256.New, opts.EncryptionKey)
		h.Write([]byte("tokengate redis key names v1"))
		s.nameKey = h.Sum(nil)
	}

	uo := &redis.UniversalOptions{
		Username:              opts.Username,
		Password:              opts.Password,
		DB:                    opts.DB,
		DialTimeout:           s.timeout,
		ReadTimeout:           s.timeout,
		WriteTimeout:          s.timeout,
		PoolTimeout:           s.timeout,
		ContextTimeoutEnabled: true,
		// One quick retry covers a pooled connection that died with a Redis restart.
		MaxRetries:      1,
		MinRetryBackoff: time.Millisecond,
		MaxRetryBackoff: 10 * time.Millisecond,
		// Dial once per attempt: while Redis is down we fail fast and fetch locally.
		DialerRetries:      1,
		DialerRetryTimeout: 10 * time.Millisecond,
		DisableIdentity:    true,
		ClientName:         "tokengate",
		MaintNotificationsConfig: &maintnotifications.Config{
			Mode: maintnotifications.ModeDisabled,
		},
	}
	modes := 0
	if opts.Addr != "" {
		modes++
		uo.Addrs = []string{opts.Addr}
	}
	if len(opts.SentinelAddrs) > 0 {
		modes++
		if opts.MasterName == "" {
			return nil, errors.New("redis: sentinel_addrs needs master_name")
		}
		uo.Addrs = opts.SentinelAddrs
		uo.MasterName = opts.MasterName
	} else if opts.MasterName != "" {
		return nil, errors.New("redis: master_name needs sentinel_addrs")
	}
	if len(opts.ClusterAddrs) > 0 {
		modes++
		uo.Addrs = opts.ClusterAddrs
		uo.IsClusterMode = true
		if opts.DB != 0 {
			return nil, errors.New("redis: db must be 0 with cluster_addrs")
		}
	}
	if modes != 1 {
		return nil, errors.New("redis: set exactly one of addr, sentinel_addrs, cluster_addrs")
	}
	if opts.TLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: opts.ServerName}
		if len(opts.CAPEM) > 0 {
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(opts.CAPEM) {
				return nil, errors.New("redis: tls ca_file: no PEM certificate found")
			}
		}
		uo.TLSConfig = tc
	} else if len(opts.CAPEM) > 0 || opts.ServerName != "" {
		return nil, errors.New("redis: ca_file and server_name need tls enabled")
	}
	s.rdb = redis.NewUniversalClient(uo)
	if s.aead == nil {
		s.log.Warn("redis upstream-token cache without an encryption key: tokens are stored in clear; set cache.redis.encryption_key_file")
	}
	return s, nil
}

// LogAdapter routes go-redis's own (process-global) log lines into slog. go-redis has no
// per-client logger; whoever owns the process may call redis.SetLogger(LogAdapter{L: logger}).
type LogAdapter struct{ L *slog.Logger }

// Printf implements go-redis's internal.Logging.
func (a LogAdapter) Printf(ctx context.Context, format string, v ...any) {
	if a.L != nil {
		a.L.WarnContext(ctx, "redis client", "detail", fmt.Sprintf(format, v...))
	}
}

// Close closes the connections. A lease held at that moment lapses on its own.
func (s *Store) Close() error { return s.rdb.Close() }

func (s *Store) name(kind string, key upstream.Key) string {
	if s.nameKey != nil {
		h := hmac.New(sha256.New, s.nameKey)
		h.Write([]byte(key))
		return s.prefix + kind + hex.EncodeToString(h.Sum(nil))
	}
	return s.prefix + kind + key.Hex()
}

// Load implements upstream.Store.
func (s *Store) Load(ctx context.Context, key upstream.Key) (upstream.Token, bool, error) {
	raw, ok, err := s.get(ctx, s.name("tok:", key))
	if err != nil {
		return upstream.Token{}, false, err
	}
	tok, ok := decode(raw, ok)
	if !ok || !s.now().Before(tok.Expiry) {
		s.m.RedisOp("get", "miss")
		s.m.CacheMiss("redis")
		return upstream.Token{}, false, nil
	}
	s.m.RedisOp("get", "hit")
	s.m.CacheHit("redis")
	return tok, true, nil
}

// Save implements upstream.Store.
func (s *Store) Save(ctx context.Context, key upstream.Key, tok upstream.Token) error {
	return s.set(ctx, s.name("tok:", key), encode(tok), tok.Expiry)
}

// get reads the value under name and opens it; ok is false when there is none or it is not a
// value this store wrote.
func (s *Store) get(ctx context.Context, name string) (raw []byte, ok bool, err error) {
	if !s.allow() {
		return nil, false, upstream.ErrStoreDown
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	b, err := s.rdb.Get(ctx, name).Bytes()
	if errors.Is(err, redis.Nil) {
		s.observe("get", nil)
		return nil, false, nil
	}
	s.observe("get", err)
	if err != nil {
		return nil, false, err
	}
	raw, ok = s.open(name, b)
	return raw, ok, nil
}

// set seals raw and stores it under name until `until` (nothing when that is less than a
// millisecond away).
func (s *Store) set(ctx context.Context, name string, raw []byte, until time.Time) error {
	ttl := until.Sub(s.now())
	if ttl < time.Millisecond {
		return nil
	}
	if !s.allow() {
		return upstream.ErrStoreDown
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	b, err := s.seal(name, raw)
	if err != nil {
		return err
	}
	err = s.rdb.Set(ctx, name, b, ttl).Err()
	s.observe("set", err)
	if err == nil {
		s.m.RedisOp("set", "ok")
	}
	return err
}

// TryLock implements upstream.Store with a renewed lease.
func (s *Store) TryLock(ctx context.Context, key upstream.Key) (func(), bool, error) {
	if !s.allow() {
		return nil, false, upstream.ErrStoreDown
	}
	var ob [16]byte
	_, _ = rand.Read(ob[:])
	owner := hex.EncodeToString(ob[:])
	name := s.name("lock:", key)
	octx, cancel := context.WithTimeout(ctx, s.timeout)
	got, err := s.lockScr.Run(octx, s.rdb, []string{name}, owner, s.lockTTL.Milliseconds()).Int()
	cancel()
	s.observe("lock", err)
	if err != nil {
		return nil, false, err
	}
	switch got {
	case 0:
		s.m.RedisOp("lock", "busy")
		return nil, false, nil
	case 2:
		s.m.RedisOp("lock", "abandoned")
		s.log.Warn("redis fetch lock without an expiry taken over (set by hand, or its TTL was lost)")
	default:
		s.m.RedisOp("lock", "acquired")
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go s.renew(name, owner, stop, done)
	var once sync.Once
	unlock := func() {
		once.Do(func() {
			close(stop)
			<-done
			uctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			defer cancel()
			n, err := s.unlockScr.Run(uctx, s.rdb, []string{name}, owner).Int()
			s.observe("unlock", err)
			switch {
			case err != nil:
			case n == 1:
				s.m.RedisOp("unlock", "ok")
			default:
				s.m.RedisOp("unlock", "lost") // the lease lapsed and someone else may hold it now
			}
		})
	}
	return unlock, true, nil
}

// renew extends the lease every third of its TTL until stop, or until it is lost.
func (s *Store) renew(name, owner string, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(s.lockTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		n, err := s.renewScr.Run(ctx, s.rdb, []string{name}, owner, s.lockTTL.Milliseconds()).Int()
		cancel()
		if err != nil || n != 1 {
			s.m.RedisOp("renew", "lost")
			return
		}
	}
}

// allow reports whether to try Redis now: false while an outage is being waited out.
func (s *Store) allow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.down || !time.Now().Before(s.retryAt)
}

// observe tracks Redis health: the first failure of an outage is logged once and opens the
// fail-fast window; the first success after it is logged once.
func (s *Store) observe(op string, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, redis.ErrClosed) {
		s.m.RedisOp(op, "error")
		return // the caller went away, or we are shutting down: not an outage
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.m.RedisOp(op, "error")
		if !s.down {
			s.down = true
			s.log.Warn("redis unavailable: serving local tokens and fetching locally", "op", op, "error", redisErrKind(err))
		}
		s.retryAt = time.Now().Add(s.retry)
		return
	}
	if s.down {
		s.down = false
		s.log.Info("redis available again: sharing upstream tokens")
	}
}

// redisErrKind is a short, secret-free description of a Redis error for the log.
func redisErrKind(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, upstream.ErrStoreDown):
		return "down"
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "connection refused"):
		return "connection refused"
	case strings.Contains(msg, "NOAUTH"), strings.Contains(msg, "WRONGPASS"):
		return "authentication failed"
	case strings.Contains(msg, "EOF"), strings.Contains(msg, "reset"), strings.Contains(msg, "broken pipe"):
		return "connection lost"
	}
	return "error"
}

// Value format: one version byte, then for 'p' (plain) the encoded token, for 'e' (AES-GCM)
// a 12-byte nonce and the sealed encoded token. The encoded token is
// expiry (8 bytes, Unix ns) | issued (8 bytes, Unix ns) | access token.
const (
	formatPlain  = 'p'
	formatSealed = 'e'
)

func encode(tok upstream.Token) []byte {
	raw := make([]byte, 16, 16+len(tok.AccessToken))
	binary.BigEndian.PutUint64(raw[0:8], uint64(tok.Expiry.UnixNano()))
	binary.BigEndian.PutUint64(raw[8:16], uint64(tok.IssuedAt.UnixNano()))
	return append(raw, tok.AccessToken...)
}

// seal wraps raw in the value format: plain, or AES-GCM with the key name as additional data.
func (s *Store) seal(name string, raw []byte) ([]byte, error) {
	if s.aead == nil {
		return append([]byte{formatPlain}, raw...), nil
	}
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(raw)+s.aead.Overhead())
	out[0] = formatSealed
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("redis: nonce: %w", err)
	}
	return s.aead.Seal(out, out[1:1+s.aead.NonceSize()], raw, []byte(name)), nil
}

// open reverses seal; false for anything that is not a value this store wrote.
func (s *Store) open(name string, b []byte) ([]byte, bool) {
	if len(b) < 1 {
		return nil, false
	}
	switch {
	case b[0] == formatSealed && s.aead != nil:
		ns := s.aead.NonceSize()
		if len(b) < 1+ns {
			return nil, false
		}
		raw, err := s.aead.Open(nil, b[1:1+ns], b[1+ns:], []byte(name))
		if err != nil {
			return nil, false
		}
		return raw, true
	case b[0] == formatPlain && s.aead == nil:
		return b[1:], true
	}
	// Sealed without a key, or plaintext while we require sealed values: ignore it.
	return nil, false
}

// decode reverses encode; ok passes on get's answer, and false means no usable token.
func decode(raw []byte, ok bool) (upstream.Token, bool) {
	if !ok || len(raw) < 17 {
		return upstream.Token{}, false
	}
	tok := upstream.Token{
		Expiry:      time.Unix(0, int64(binary.BigEndian.Uint64(raw[0:8]))),
		IssuedAt:    time.Unix(0, int64(binary.BigEndian.Uint64(raw[8:16]))),
		AccessToken: string(raw[16:]),
	}
	if len(tok.AccessToken) > upstream.MaxAccessTokenBytes || !tok.IssuedAt.Before(tok.Expiry) {
		return upstream.Token{}, false
	}
	for i := 0; i < len(tok.AccessToken); i++ {
		if c := tok.AccessToken[i]; c < 0x20 || c > 0x7e {
			return upstream.Token{}, false
		}
	}
	return tok, true
}

// Sealed implements upstream.Shared: values are AES-GCM sealed under the encryption key.
func (s *Store) Sealed() bool { return s.aead != nil }

// Claim implements upstream.Shared with SET NX PX: of any number of replicas claiming one key
// within its lifetime, exactly one is first. The value is a single byte: the key name (a digest)
// is all that is shared.
func (s *Store) Claim(ctx context.Context, kind, key string, until time.Time) (bool, error) {
	ttl := until.Sub(s.now())
	if ttl < time.Millisecond {
		ttl = time.Millisecond // recorded briefly all the same: SET NX must decide who is first
	}
	if !s.allow() {
		return false, upstream.ErrStoreDown
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	ok, err := s.rdb.SetNX(ctx, s.name(kind, upstream.Key(key)), "1", ttl).Result()
	s.observe("claim", err)
	if err != nil {
		return false, err
	}
	if ok {
		s.m.RedisOp("claim", "first")
	} else {
		s.m.RedisOp("claim", "taken")
	}
	return ok, nil
}

// LoadValue implements upstream.Shared.
func (s *Store) LoadValue(ctx context.Context, kind, key string) ([]byte, bool, error) {
	v, ok, err := s.get(ctx, s.name(kind, upstream.Key(key)))
	switch {
	case err != nil:
		return nil, false, err
	case !ok:
		s.m.RedisOp("get", "miss")
		return nil, false, nil
	}
	s.m.RedisOp("get", "hit")
	return v, true, nil
}

// SaveValue implements upstream.Shared.
func (s *Store) SaveValue(ctx context.Context, kind, key string, v []byte, until time.Time) error {
	return s.set(ctx, s.name(kind, upstream.Key(key)), v, until)
}
