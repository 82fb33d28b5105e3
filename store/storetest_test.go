package store_test

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/seal"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/store/storetest"
)

// backend is one Redis the store contract runs against (storetest.Each:
// miniredis, the real Redis at REDIS_URL, a Cluster), with a store on it.
type backend struct {
	name   string
	s      *store.Redis          // the store under test, sealing with key
	raw    redis.UniversalClient // a client of its own, for raw reads and writes
	prefix string
	key    []byte               // s's only encryption key
	mr     *miniredis.Miniredis // nil on a real Redis

	dial func() redis.UniversalClient
	sb   *storetest.Backend
}

// open returns another store on the same Redis and prefix with another
// keyring (key rotation) and a client of its own, closed at the end.
func (b *backend) open(t *testing.T, keys ...[]byte) *store.Redis {
	t.Helper()
	s, err := store.New(b.dial(), b.prefix, keys...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// eachBackend runs the same contract on every backend.
func eachBackend(t *testing.T, fn func(t *testing.T, s *store.Redis, raw redis.UniversalClient, prefix string)) {
	t.Helper()
	forBackends(t, func(t *testing.T, b *backend) { fn(t, b.s, b.raw, b.prefix) })
}

// forBackends is eachBackend for tests that need more than the store:
// another keyring, miniredis' clock.
func forBackends(t *testing.T, fn func(t *testing.T, b *backend)) {
	t.Helper()
	storetest.Each(t, func(t *testing.T, sb *storetest.Backend) {
		key := seal.NewRandomKey()
		s, err := store.New(sb.Dial(), sb.Prefix, key)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		fn(t, &backend{name: sb.Name, s: s, raw: sb.Raw, prefix: sb.Prefix, key: key, mr: sb.MR, dial: sb.Dial, sb: sb})
	})
}

// scanKeys lists every key whose name holds prefix.
func scanKeys(_ context.Context, t *testing.T, raw redis.UniversalClient, prefix string) []string {
	t.Helper()
	return (&storetest.Backend{Name: "scan", Prefix: prefix, Raw: raw}).Keys(t)
}

// rawEntry is one key of the prefix with everything it holds, read raw.
type rawEntry struct {
	key, typ string
	values   []string
}

// dumpKeys reads every key of the prefix and every value in it, whatever
// its type. An unknown type fails the test, so a new kind of key cannot
// slip past the "nothing in clear" checks.
func dumpKeys(t *testing.T, raw redis.UniversalClient, prefix string) []rawEntry {
	t.Helper()
	ctx := t.Context()
	var out []rawEntry
	for _, k := range scanKeys(ctx, t, raw, prefix) {
		typ, err := raw.Type(ctx, k).Result()
		require.NoError(t, err)
		e := rawEntry{key: k, typ: typ}
		switch typ {
		case "string":
			v, err := raw.Get(ctx, k).Result()
			require.NoError(t, err)
			e.values = append(e.values, v)
		case "hash":
			h, err := raw.HGetAll(ctx, k).Result()
			require.NoError(t, err)
			for _, f := range slices.Sorted(maps.Keys(h)) {
				e.values = append(e.values, f, h[f])
			}
		case "zset":
			zs, err := raw.ZRangeWithScores(ctx, k, 0, -1).Result()
			require.NoError(t, err)
			for _, z := range zs {
				e.values = append(e.values, z.Member.(string), strconv.FormatFloat(z.Score, 'f', -1, 64))
			}
		case "set":
			m, err := raw.SMembers(ctx, k).Result()
			require.NoError(t, err)
			e.values = append(e.values, m...)
		case "list":
			l, err := raw.LRange(ctx, k, 0, -1).Result()
			require.NoError(t, err)
			e.values = append(e.values, l...)
		case "stream":
			msgs, err := raw.XRange(ctx, k, "-", "+").Result()
			require.NoError(t, err)
			for _, m := range msgs {
				e.values = append(e.values, m.ID)
				for _, f := range slices.Sorted(maps.Keys(m.Values)) {
					e.values = append(e.values, f, m.Values[f].(string))
				}
			}
		case "none":
			continue // expired between SCAN and TYPE
		default:
			t.Fatalf("key %q has type %q, which dumpKeys cannot read", k, typ)
		}
		out = append(out, e)
	}
	return out
}

// rawText is every key name and value of the prefix, one per line.
func rawText(t *testing.T, raw redis.UniversalClient, prefix string) string {
	t.Helper()
	var sb strings.Builder
	for _, e := range dumpKeys(t, raw, prefix) {
		sb.WriteString(e.key + "\n")
		for _, v := range e.values {
			sb.WriteString(v + "\n")
		}
	}
	return sb.String()
}

// keysContaining returns the key names of the prefix that contain sub.
func keysContaining(t *testing.T, raw redis.UniversalClient, prefix, sub string) []string {
	t.Helper()
	var out []string
	for _, k := range scanKeys(t.Context(), t, raw, prefix) {
		if strings.Contains(k, sub) {
			out = append(out, k)
		}
	}
	return out
}

// accountKey finds the hash holding an account: the one hash whose name
// holds the id.
func accountKey(t *testing.T, raw redis.UniversalClient, prefix, id string) string {
	t.Helper()
	var found []string
	for _, k := range keysContaining(t, raw, prefix, id) {
		if raw.Type(t.Context(), k).Val() == "hash" {
			found = append(found, k)
		}
	}
	require.Len(t, found, 1, "exactly one hash per account")
	return found[0]
}

// zsetSizes returns the cardinality of every sorted set of the prefix.
func zsetSizes(t *testing.T, raw redis.UniversalClient, prefix string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, e := range dumpKeys(t, raw, prefix) {
		if e.typ == "zset" {
			out[e.key] = int64(len(e.values) / 2)
		}
	}
	return out
}

// fakeClock is a settable clock for store.SetClock. It starts on a whole
// millisecond, and the store keeps milliseconds, so times read back are
// equal to the ones set.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock(s ...*store.Redis) *fakeClock {
	c := &fakeClock{now: time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)}
	for _, st := range s {
		st.SetClock(c.Now)
	}
	return c
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

func randomHex(n int) string { return storetest.RandomHex(n) }

// newAPIKey returns a distinctive API key, easy to look for in raw Redis.
func newAPIKey() redact.Secret { return redact.Secret("apikey-" + randomHex(16)) }

func shopURL(n int) string { return "https://shop-" + strconv.Itoa(n) + ".retailcrm.ru" }

// connect runs a whole successful register at the store's level: the
// attempt, then the CRM's acceptance recorded under the attempt's lease.
func connect(t *testing.T, s *store.Redis, systemURL string, apiKey redact.Secret) store.Account {
	t.Helper()
	ctx := t.Context()
	at, err := s.BeginConnect(ctx, systemURL, apiKey)
	require.NoError(t, err)
	require.True(t, at.Lease.Held(), "nobody else holds the lease")
	a, err := s.Record(ctx, at.Lease, at.Account, accepted(at, apiKey))
	require.NoError(t, err)
	return a
}

// accepted is what the CRM's acceptance of an attempt's edit records.
func accepted(at store.Attempt, apiKey redact.Secret) store.Sync {
	ev := store.EventReconnected
	if !at.Account.Connected {
		ev = store.EventConnected
	}
	return store.Sync{
		Sent: at.Account.Want, FromVersion: at.Account.WantVersion, Proved: apiKey, ProvedSeq: at.Seq, Edited: true,
		Changes: []store.Change{{Type: ev}},
	}
}

// lease takes an account's lease, which must be free.
func lease(t *testing.T, s *store.Redis, id string) (store.Account, store.Lease) {
	t.Helper()
	acc, l, bad, err := s.Acquire(t.Context(), id)
	require.NoError(t, err)
	require.Empty(t, bad)
	return acc, l
}
