package store_test

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/seal"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/store/storetest"
)

// benchStores runs fn once on miniredis and once on the real Redis of
// REDIS_URL (skipped without it), each with a random key prefix whose keys
// are deleted afterwards; never FLUSHDB, the Redis is shared.
func benchStores(b *testing.B, fn func(b *testing.B, s *store.Redis)) {
	b.Run("miniredis", func(b *testing.B) {
		mr := miniredis.RunT(b)
		s, err := store.New(redis.NewClient(&redis.Options{Addr: mr.Addr()}), "bench-"+storetest.RandomHex(4), seal.NewRandomKey())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		fn(b, s)
	})
	b.Run("redis", func(b *testing.B) {
		url := os.Getenv("REDIS_URL")
		if url == "" {
			b.Skip("REDIS_URL is not set: the real-Redis half runs only against a real Redis")
		}
		opt, err := redis.ParseURL(url)
		if err != nil {
			b.Fatal("REDIS_URL is not a valid Redis URL")
		}
		dial := func() redis.UniversalClient { return redis.NewClient(opt) }
		raw := dial()
		bk := &storetest.Backend{Name: "redis", Prefix: "bench-" + storetest.RandomHex(8), Raw: raw, Dial: dial}
		b.Cleanup(func() { bk.DeleteKeys(b); _ = raw.Close() })
		s, err := store.New(dial(), bk.Prefix, seal.NewRandomKey())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		if err := s.Ping(context.Background()); err != nil {
			b.Fatalf("redis does not answer: %v", err)
		}
		fn(b, s)
	})
}

// BenchmarkConnectRoundTrip is the store's share of a register: record the
// attempt as pending (BeginConnect), then make it active (CompleteConnect).
// "new-shop" creates one account per iteration, as a first connection does;
// "known-shop" reconnects one shop, as a repeated register does.
func BenchmarkConnectRoundTrip(b *testing.B) {
	const key = redact.Secret("bench-api-key-0123456789abcdef")
	benchStores(b, func(b *testing.B, s *store.Redis) {
		ctx := context.Background()
		b.Run("new-shop", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				acc, err := s.BeginConnect(ctx, "https://shop-"+strconv.Itoa(i)+".retailcrm.ru", key)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.CompleteConnect(ctx, acc.ID, key); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("known-shop", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				acc, err := s.BeginConnect(ctx, "https://known.retailcrm.ru", key)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.CompleteConnect(ctx, acc.ID, key); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
