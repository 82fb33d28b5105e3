package ratelimit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/ratelimit"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/store/storetest"
)

// fail records n failures from addr and returns the last verdict.
func fail(t *testing.T, f *ratelimit.Failures, addr string, n int) ratelimit.Verdict {
	t.Helper()
	var v ratelimit.Verdict
	for range n {
		var err error
		v, err = f.Fail(t.Context(), addr)
		require.NoError(t, err)
	}
	return v
}

// The budget is per address and shared by replicas: two limiters on one
// Redis count together, and the first failure past the budget is reported
// once as news.
func TestFailuresAreCountedPerAddressAcrossReplicas(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		replicaA := ratelimit.NewFailures(b.Raw, b.Prefix, 3)
		replicaB := ratelimit.NewFailures(b.Raw, b.Prefix, 3)

		assert.False(t, fail(t, replicaA, "192.0.2.1", 2).Over)
		assert.False(t, fail(t, replicaB, "192.0.2.1", 1).Over, "the third failure is within the budget")
		v := fail(t, replicaA, "192.0.2.1", 1)
		assert.True(t, v.Over, "the fourth, on either replica, is over")
		assert.True(t, v.First, "news the first time")
		assert.Positive(t, v.RetryAfter)
		assert.LessOrEqual(t, v.RetryAfter, 20*time.Second, "3 a minute: one more every 20 s")
		v = fail(t, replicaA, "192.0.2.1", 1)
		assert.True(t, v.Over)
		assert.False(t, v.First, "not news twice")
		assert.True(t, fail(t, replicaB, "192.0.2.1", 1).Over, "replica B sees the same budget")

		assert.False(t, fail(t, replicaA, "192.0.2.2", 3).Over, "another address has its own budget")

		for _, k := range b.Keys(t) {
			assert.True(t, strings.Contains(k, b.Prefix+":fail:192.0.2."), "key %q names the address only", k)
		}
	})
}

// An IPv6 subscriber holds a whole /64: its addresses share one budget.
// An IPv4-mapped address is its IPv4 address.
func TestIPv6AddressesShareTheirSlash64(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	f := ratelimit.NewFailures(rdb, "test", 2)

	fail(t, f, "2001:db8:0:1::1", 1)
	fail(t, f, "2001:db8:0:1::2", 1)
	assert.True(t, fail(t, f, "2001:db8:0:1:ffff::3", 1).Over, "a third address of the same /64 is over")
	assert.False(t, fail(t, f, "2001:db8:0:2::1", 1).Over, "the next /64 is someone else")

	fail(t, f, "198.51.100.7", 2)
	assert.True(t, fail(t, f, "::ffff:198.51.100.7", 1).Over, "the mapped spelling is the same address")
}

// Once a replica knows an address is over, its failures are refused
// without asking Redis until the budget refills; then Redis decides again.
func TestAnAddressOverItsBudgetCostsNoRoundTrip(t *testing.T) {
	mr := miniredis.RunT(t)
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	mr.SetTime(now) // the limiter's clock is Redis's TIME
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	f := ratelimit.NewFailures(rdb, "test", 3)
	f.SetClock(func() time.Time { return now })

	fail(t, f, "192.0.2.1", 3)
	v := fail(t, f, "192.0.2.1", 1)
	require.True(t, v.Over)
	commands := mr.CommandCount()
	for range 100 {
		assert.True(t, fail(t, f, "192.0.2.1", 1).Over)
	}
	assert.Equal(t, commands, mr.CommandCount(), "100 refused failures, no Redis command")

	now = now.Add(v.RetryAfter)
	mr.SetTime(now)
	assert.False(t, fail(t, f, "192.0.2.1", 1).Over, "after the retry time one more failure fits")
	assert.Greater(t, mr.CommandCount(), commands, "and Redis was asked")
	v = fail(t, f, "192.0.2.1", 1)
	assert.True(t, v.Over, "then the address is over again")
	assert.False(t, v.First, "but that was reported less than a minute ago")

	now = now.Add(time.Minute)
	mr.SetTime(now)
	fail(t, f, "192.0.2.1", 3) // the budget refilled: 3 fit, the 4th is over
	v = fail(t, f, "192.0.2.1", 1)
	assert.True(t, v.Over)
	assert.True(t, v.First, "a minute later it is news again")
}

func TestFailuresReportARedisError(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	f := ratelimit.NewFailures(rdb, "test", 3)
	mr.Close()
	v, err := f.Fail(context.Background(), "192.0.2.1")
	assert.Error(t, err)
	assert.False(t, v.Over, "no verdict without Redis: the caller answers as it would anyway")
}

// Attempts are bounded per (shop, key) pair, across replicas; another key
// or another shop is another pair. No key name holds the API key or the
// address.
func TestAttemptsAreBoundedPerShopAndKey(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		ctx := t.Context()
		replicaA := ratelimit.NewAttempts(b.Raw, b.Prefix, 3, 10*time.Second)
		replicaB := ratelimit.NewAttempts(b.Raw, b.Prefix, 3, 10*time.Second)
		const shop, other = "https://shop.retailcrm.ru", "https://other.retailcrm.ru"
		const key redact.Secret = "api-key-0123456789abcdef0123456789"
		allow := func(a *ratelimit.Attempts, shop string, key redact.Secret) ratelimit.AttemptVerdict {
			v, err := a.Allow(ctx, shop, key)
			require.NoError(t, err)
			return v
		}

		t0 := time.Now()
		tick := func(ms int) { // distinct start times (miniredis's clock is set by hand)
			if b.MR != nil {
				b.MR.SetTime(t0.Add(time.Duration(ms) * time.Millisecond))
			}
		}
		tick(0)
		first := allow(replicaA, shop, key)
		assert.True(t, first.OK && !first.Last)
		tick(1)
		second := allow(replicaB, shop, key)
		assert.True(t, second.OK && !second.Last)
		tick(2)
		third := allow(replicaA, shop, key)
		assert.True(t, third.OK && third.Last,
			"the third takes the pair's last slot: its end must be told, since registers past the bound may wait for it")
		v := allow(replicaB, shop, key)
		assert.False(t, v.OK, "the fourth attempt of the pair, on any replica, is refused")
		assert.True(t, v.InFlight, "and says the last attempt that went may still be under way")
		if b.MR != nil {
			// (On real Redis the three may share a millisecond, and so a name.)
			require.NoError(t, replicaB.Ended(ctx, shop, key, first))
			inFlight, err := replicaA.InFlight(ctx, shop, key)
			require.NoError(t, err)
			assert.True(t, inFlight, "a late word from an earlier attempt does not end the latest")
		}
		require.NoError(t, replicaB.Ended(ctx, shop, key, third))
		inFlight, err := replicaA.InFlight(ctx, shop, key)
		require.NoError(t, err)
		assert.False(t, inFlight, "until it is reported ended")
		assert.True(t, allow(replicaA, shop, "a-new-key-for-the-same-shop-000000").OK, "a new key is a new attempt")
		assert.True(t, allow(replicaA, other, key).OK, "the same key at another shop is another pair")

		keys := b.Keys(t)
		require.Len(t, keys, 3)
		for _, k := range keys {
			assert.NotContains(t, k, key.Reveal())
			assert.NotContains(t, k, "retailcrm")
		}
	})
}

func TestPairDigestSeparatesItsParts(t *testing.T) {
	a := ratelimit.PairDigest("https://a.retailcrm.ru", "bc")
	assert.NotEqual(t, a, ratelimit.PairDigest("https://a.retailcrm.rub", "c"), "the boundary between shop and key counts")
	assert.Equal(t, a, ratelimit.PairDigest("https://a.retailcrm.ru", "bc"))
	assert.Len(t, a, 64)
}
