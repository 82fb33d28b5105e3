package store_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/seal"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/store/storetest"
)

// benchStores runs fn on every backend storetest knows (miniredis; the
// real Redis of REDIS_URL and a Cluster when set), each with a random key
// prefix whose keys are deleted afterwards; never FLUSHDB.
func benchStores(b *testing.B, fn func(b *testing.B, s *store.Redis)) {
	storetest.EachB(b, func(b *testing.B, be *storetest.Backend) {
		s, err := store.New(be.Dial(), be.Prefix, seal.NewRandomKey())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		fn(b, s)
	})
}

// BenchmarkConnectRoundTrip is the store's share of a register: record the
// attempt (BeginConnect, which takes the lease), then the CRM's acceptance
// (Record, which releases it): two round trips.
// "new-shop" creates one account per iteration, as a first connection does;
// "known-shop" reconnects one shop, as a repeated register does.
func BenchmarkConnectRoundTrip(b *testing.B) {
	const key = redact.Secret("bench-api-key-0123456789abcdef")
	benchStores(b, func(b *testing.B, s *store.Redis) {
		b.Run("new-shop", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				roundTrip(b, s, "https://shop-"+strconv.Itoa(i)+".retailcrm.ru", key)
			}
		})
		b.Run("known-shop", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				roundTrip(b, s, "https://known.retailcrm.ru", key)
			}
		})
	})
}

func roundTrip(b *testing.B, s *store.Redis, url string, key redact.Secret) {
	ctx := context.Background()
	at, err := s.BeginConnect(ctx, url, key)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Record(ctx, at.Lease, at.Account, store.Sync{
		Sent: at.Account.Want, FromVersion: at.Account.WantVersion, Proved: key, ProvedSeq: at.Seq, Edited: true,
		Changes: []store.Change{{Type: store.EventConnected}},
	}); err != nil {
		b.Fatal(err)
	}
}
