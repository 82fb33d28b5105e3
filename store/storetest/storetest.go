// Package storetest runs tests against every Redis the store supports: the
// embedded miniredis always, a real Redis when REDIS_URL is set, and a
// Redis Cluster when REDIS_CLUSTER_ADDRS is set (CI sets both). Without one
// of them its subtests skip, except under CI=true, where they fail: CI
// must never pass having silently tested less. A backend that is set but
// does not answer always fails. Each test gets a random key prefix and
// deletes only its own keys afterwards (never FLUSHDB: the Redis is shared).
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Backend is one Redis a test runs against.
type Backend struct {
	Name   string
	Prefix string               // random, this test's own
	MR     *miniredis.Miniredis // nil unless Name is "miniredis"
	// Raw is a client of its own, for reads and writes behind the store's
	// back; closed at the end of the test.
	Raw redis.UniversalClient
	// Dial makes a new client to the same Redis (the caller closes it).
	Dial func() redis.UniversalClient
}

// Each runs fn once per available backend, as subtests named after them.
func Each(t *testing.T, fn func(t *testing.T, b *Backend)) {
	t.Helper()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) { fn(t, k.open(t)) })
	}
}

// EachB is Each for benchmarks.
func EachB(b *testing.B, fn func(b *testing.B, be *Backend)) {
	b.Helper()
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) { fn(b, k.open(b)) })
	}
}

// kinds are the backends, in order; each open skips when its Redis is not
// configured.
var kinds = []struct {
	name string
	open func(t testing.TB) *Backend
}{
	{"miniredis", func(t testing.TB) *Backend {
		mr := miniredis.RunT(t)
		b := newBackend(t, "miniredis", func() redis.UniversalClient {
			return redis.NewClient(&redis.Options{Addr: mr.Addr()})
		})
		b.MR = mr
		return b
	}},
	{"redis", func(t testing.TB) *Backend {
		url := os.Getenv("REDIS_URL")
		if url == "" {
			missing(t, "REDIS_URL is not set: the real-Redis half runs only against a real Redis (CI sets REDIS_URL=redis://127.0.0.1:6379/0)")
		}
		opt, err := redis.ParseURL(url)
		if err != nil {
			t.Fatal("REDIS_URL is not a valid Redis URL")
		}
		return newBackend(t, "redis", func() redis.UniversalClient { return redis.NewClient(opt) })
	}},
	{"cluster", func(t testing.TB) *Backend {
		addrs := ClusterAddrs(t)
		return newBackend(t, "cluster", func() redis.UniversalClient {
			return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs, IsClusterMode: true})
		})
	}},
}

// ClusterAddrs returns the seed nodes in REDIS_CLUSTER_ADDRS, for tests
// that open a Cluster themselves. Without them the test skips, or fails
// under CI=true.
func ClusterAddrs(t testing.TB) []string {
	t.Helper()
	addrs := os.Getenv("REDIS_CLUSTER_ADDRS")
	if addrs == "" {
		missing(t, "REDIS_CLUSTER_ADDRS is not set: start one with scripts/redis-cluster (CI does)")
	}
	return strings.Split(addrs, ",")
}

// missing skips a test whose backend is not configured, or fails it under
// CI=true, where every backend must be there.
func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why + " (CI=true: a missing backend fails instead of skipping)")
	}
	t.Skip(why)
}

func newBackend(t testing.TB, name string, dial func() redis.UniversalClient) *Backend {
	t.Helper()
	raw := dial()
	t.Cleanup(func() { _ = raw.Close() }) // registered first: runs after the key cleanup
	if err := raw.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("%s does not answer: %v", name, err)
	}
	b := &Backend{Name: name, Prefix: "test-" + RandomHex(8), Raw: raw, Dial: dial}
	t.Cleanup(func() { b.DeleteKeys(t) })
	return b
}

// Keys lists every key whose name holds the prefix, on every master of a
// cluster. The prefix is random, so this test's keys only.
func (b *Backend) Keys(t testing.TB) []string {
	t.Helper()
	ctx := context.Background()
	var (
		mu  sync.Mutex
		out []string
	)
	scan := func(ctx context.Context, c redis.Cmdable) error {
		it := c.Scan(ctx, 0, "*"+b.Prefix+"*", 1000).Iterator()
		for it.Next(ctx) {
			mu.Lock()
			out = append(out, it.Val())
			mu.Unlock()
		}
		return it.Err()
	}
	var err error
	if cc, ok := b.Raw.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, b.Raw)
	}
	if err != nil {
		t.Fatalf("scan %s: %v", b.Name, err)
	}
	slices.Sort(out)
	return slices.Compact(out) // SCAN may return a key twice
}

// DeleteKeys removes every key of the prefix, and only those. It runs in
// t.Cleanup, when t.Context() is already cancelled.
func (b *Backend) DeleteKeys(t testing.TB) {
	t.Helper()
	for _, k := range b.Keys(t) {
		if err := b.Raw.Del(context.Background(), k).Err(); err != nil {
			t.Errorf("clean up %q: %v", k, err)
		}
	}
}

// RandomHex returns n random bytes as hex.
func RandomHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	return hex.EncodeToString(buf)
}
