package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"

	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/seal"
)

// Options say which Redis to use and how.
type Options struct {
	// URL is a redis://, rediss:// or unix:// URL of a single node.
	URL redact.Secret
	// ClusterAddrs are seed nodes of a Redis Cluster.
	ClusterAddrs []string
	// SentinelMaster and SentinelAddrs select a Sentinel-managed master.
	SentinelMaster string
	SentinelAddrs  []string
	// Password is used with ClusterAddrs and SentinelAddrs (a URL carries
	// its own).
	Password redact.Secret
	// Prefix starts every key name.
	Prefix string
	// EncryptionKeys seal credentials; the first is current. With the
	// embedded store an ephemeral key is made when none is given.
	EncryptionKeys [][]byte
	// EventsMaxLen bounds the event stream (approximately).
	EventsMaxLen int64
	// LeaseTTL bounds how long one holder may talk to a shop's CRM before
	// others may take over (a crashed replica's lease frees itself); longer
	// than any CRM call with its retries. Default 30s.
	LeaseTTL time.Duration
	// RetryAfter is when the sweeper first looks at unfinished work (a
	// register still under way must not be raced). Default 2m.
	RetryAfter time.Duration
	Log        *slog.Logger

	// clockStart and clockTick replace the embedded store's ticker in tests
	// (export_test.go): each value received is the time now.
	clockStart time.Time
	clockTick  <-chan time.Time
}

// Redis is the account store.
type Redis struct {
	rdb        redis.UniversalClient
	keys       keys
	ring       *seal.Keyring
	currentKey string // the id of the key that seals, as the values' headers name it
	maxEvents  int64
	leaseTTL   time.Duration
	retryAfter time.Duration
	// keyCheckEvery queues a newly proved key for its first health check
	// one interval later; 0: checks are off.
	keyCheckEvery time.Duration
	now           func() time.Time
	closers       []func() error
	log           *slog.Logger
	// shops remembers which account owns a shop address, so a register
	// seals the key for the right account in its first round trip; a stale
	// entry only costs a second one.
	shops *shopCache
	// unreadable remembers which unreadable accounts were logged, to log
	// each once.
	unreadable *idSet
}

// Open connects to the configured Redis, or starts the embedded one when no
// address is given, and checks that it answers.
func Open(ctx context.Context, o Options) (*Redis, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var (
		rdb     redis.UniversalClient
		closers []func() error
		mode    string
	)
	switch {
	case !o.URL.IsZero():
		opt, err := redis.ParseURL(o.URL.Reveal())
		if err != nil {
			return nil, errors.New("store: REDIS_URL is not a valid Redis URL") // the URL may hold a password
		}
		rdb, mode = redis.NewClient(opt), "single"
	case len(o.ClusterAddrs) > 0:
		rdb = redis.NewUniversalClient(&redis.UniversalOptions{
			Addrs: o.ClusterAddrs, Password: o.Password.Reveal(), IsClusterMode: true,
		})
		mode = "cluster"
	case o.SentinelMaster != "":
		rdb = redis.NewUniversalClient(&redis.UniversalOptions{
			Addrs: o.SentinelAddrs, MasterName: o.SentinelMaster, Password: o.Password.Reveal(),
		})
		mode = "sentinel"
	default:
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("store: start embedded redis: %w", err)
		}
		rdb = redis.NewClient(&redis.Options{Addr: mr.Addr()})
		start, tick, stopTicker := o.clockStart, o.clockTick, func() {}
		if tick == nil {
			t := time.NewTicker(time.Second)
			start, tick, stopTicker = time.Now(), t.C, t.Stop
		}
		stopClock := advanceClock(mr, start, tick)
		closers = append(closers, func() error { stopTicker(); stopClock(); mr.Close(); return nil })
		mode = "embedded"
		log.Warn("using the embedded in-process store: development only, accounts are lost on restart; set REDIS_URL in production")
		if len(o.EncryptionKeys) == 0 {
			o.EncryptionKeys = [][]byte{seal.NewRandomKey()}
		}
	}
	s, err := New(rdb, o.Prefix, o.EncryptionKeys...)
	if err != nil {
		_ = rdb.Close()
		for _, c := range closers {
			_ = c() // stop the embedded Redis too
		}
		return nil, err
	}
	s.closers = append(closers, s.closers...)
	s.log = log
	if o.EventsMaxLen > 0 {
		s.maxEvents = o.EventsMaxLen
	}
	if o.LeaseTTL > 0 {
		s.leaseTTL = o.LeaseTTL
	}
	if o.RetryAfter > 0 {
		s.retryAfter = o.RetryAfter
	}
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.Ping(pingCtx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("store: %s redis does not answer: %w", mode, err)
	}
	// Data sealed with a key that is not configured would make accounts
	// unreadable one by one at run time; refuse to start instead.
	if err := s.CheckSealKeys(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	log.Info("store ready", "mode", mode)
	return s, nil
}

// advanceClock moves the embedded Redis's clock along with the times
// received from tick, until stop is called. miniredis expires a key only
// when told that time passed (FastForward): without this, sessions
// outlived SESSION_TTL and rate-limit counters piled up for as long as the
// process ran. Its TIME command (the limiter's clock) already reads the
// wall clock.
func advanceClock(mr *miniredis.Miniredis, start time.Time, tick <-chan time.Time) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		last := start
		for {
			select {
			case <-done:
				return
			case now := <-tick:
				if d := now.Sub(last); d > 0 {
					mr.FastForward(d)
					last = now
				}
			}
		}
	}()
	var once sync.Once // Close may run twice
	return func() { once.Do(func() { close(done) }); <-exited }
}

// New wraps an existing client (tests, benchmarks).
func New(rdb redis.UniversalClient, prefix string, encryptionKeys ...[]byte) (*Redis, error) {
	if prefix == "" {
		return nil, errors.New("store: empty key prefix")
	}
	ring, err := seal.NewKeyring(encryptionKeys...)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &Redis{
		rdb: rdb, keys: newKeys(prefix), ring: ring, currentKey: seal.FormatKeyID(ring.IDs()[0]), maxEvents: 10000,
		leaseTTL: 30 * time.Second, retryAfter: 2 * time.Minute,
		now:     func() time.Time { return time.Now().UTC() },
		closers: []func() error{rdb.Close},
		log:     slog.New(slog.DiscardHandler),
		shops:   newShopCache(10000), unreadable: newIDSet(10000),
	}, nil
}

// Ping reports whether Redis answers.
func (s *Redis) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }

// Close closes the client (and stops the embedded Redis).
func (s *Redis) Close() error {
	var errs []error
	for i := len(s.closers) - 1; i >= 0; i-- {
		if err := s.closers[i](); err != nil && !errors.Is(err, redis.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Client exposes the Redis client for components that share it (rate
// limiter, readiness).
func (s *Redis) Client() redis.UniversalClient { return s.rdb }

// SetClock replaces the clock (tests).
func (s *Redis) SetClock(now func() time.Time) { s.now = now }

// SetLog sets the logger (New starts with none).
func (s *Redis) SetLog(log *slog.Logger) { s.log = log }

// SetTimings sets the lease TTL and the first retry delay (tests, app).
func (s *Redis) SetTimings(leaseTTL, retryAfter time.Duration) {
	if leaseTTL > 0 {
		s.leaseTTL = leaseTTL
	}
	if retryAfter > 0 {
		s.retryAfter = retryAfter
	}
}

// SetKeyCheckInterval turns the key health queue on (0: off).
func (s *Redis) SetKeyCheckInterval(every time.Duration) { s.keyCheckEvery = every }

// LeaseTTL is how long a lease lasts unless renewed.
func (s *Redis) LeaseTTL() time.Duration { return s.leaseTTL }

// ids is the process's one source of account ids. Its random part counts
// up within a millisecond (ulid.Monotonic), so ids made one after the other
// sort in the order they were made even inside one millisecond: without it,
// two shops connecting in the same millisecond were listed in random order.
// One source per process rather than per store, so that several stores on
// one Redis in one process (tests, the load tool) keep that order too.
// Across replicas, ids are ordered by their millisecond only.
var ids = struct {
	mu      sync.Mutex // MonotonicEntropy is not safe for concurrent use
	entropy *ulid.MonotonicEntropy
}{entropy: ulid.Monotonic(rand.Reader, 0)}

// newAccountID returns a ULID: unique, and ordered by creation time so that
// listing newest first is a reverse lexicographic range.
func newAccountID(now time.Time) string {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	id, err := ulid.New(ulid.Timestamp(now), ids.entropy)
	if err != nil {
		// ErrMonotonicOverflow: the 80-bit count ran out within this
		// millisecond (about one chance in 2^48 per id). A fresh source
		// starts from new random bits; only this millisecond's order is lost.
		ids.entropy = ulid.Monotonic(rand.Reader, 0)
		id = ulid.MustNew(ulid.Timestamp(now), ids.entropy)
	}
	return id.String()
}

// NewClientID returns 32 random bytes, base64url: unguessable, as the
// activity callback carries no other proof.
func NewClientID() redact.Secret { return redact.Secret(randomToken()) }

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func isNil(err error) bool { return errors.Is(err, redis.Nil) }
