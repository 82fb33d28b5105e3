package connect_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/connect"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/store/storetest"
)

func lastEventOf(t *testing.T, s *store.Redis) store.Event {
	t.Helper()
	evs, err := s.Events(t.Context(), "", 10000)
	require.NoError(t, err)
	require.NotEmpty(t, evs)
	return evs[len(evs)-1]
}

func TestKeyChecksFindRevokedKeysAndLostScopesAndAReconnectHeals(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newCaseEnv(t, b)
		const every = time.Hour
		e.store.SetKeyCheckInterval(every)
		ctx := t.Context()
		url := "https://shop.retailcrm.ru"
		sh := e.shop(url, "key-1")
		acc, err := e.svc.Connect(ctx, url, "key-1")
		require.NoError(t, err)
		check := func() map[string]int {
			t.Helper()
			e.advance(every + time.Minute)
			got, err := e.svc.CheckKeys(ctx, e.store, every)
			require.NoError(t, err)
			return got
		}
		status := func() store.Account {
			t.Helper()
			a, err := e.store.Get(ctx, acc.ID)
			require.NoError(t, err)
			return a
		}

		assert.Equal(t, map[string]int{connect.KeyCheckHealthy: 1}, check())
		assert.Equal(t, store.StatusActive, status().Status())

		func() { defer e.crm.lock(sh)(); sh.down = true }()
		assert.Equal(t, map[string]int{connect.KeyCheckFailed: 1}, check(), "no clear answer")
		assert.Equal(t, store.StatusActive, status().Status(), "changes nothing")

		func() { defer e.crm.lock(sh)(); sh.down = false; sh.scopes = []string{"integration_read"} }()
		assert.Equal(t, map[string]int{connect.KeyCheckScopesMissing: 1}, check())
		got := status()
		assert.Equal(t, store.StatusScopesMissing, got.Status())
		assert.Equal(t, []string{"integration_write"}, got.MissingScopes)
		assert.Equal(t, store.EventScopesMissing, lastEventOf(t, e.store.Redis).Type)

		func() { defer e.crm.lock(sh)(); delete(sh.keys, "key-1") }() // the owner deleted the key in the CRM
		assert.Equal(t, map[string]int{connect.KeyCheckRevoked: 1}, check())
		assert.Equal(t, store.StatusKeyRevoked, status().Status())
		ev := lastEventOf(t, e.store.Redis)
		assert.Equal(t, store.EventKeyRevoked, ev.Type)
		assert.Equal(t, store.StatusKeyRevoked, ev.Status)
		page, err := e.store.List(ctx, store.ListQuery{Status: store.StatusKeyRevoked})
		require.NoError(t, err)
		require.Len(t, page.Accounts, 1, "listed under its status")

		n := len(must(e.store.Events(ctx, "", 10000))(t))
		assert.Equal(t, map[string]int{connect.KeyCheckRevoked: 1}, check())
		assert.Len(t, must(e.store.Events(ctx, "", 10000))(t), n, "a state already known is not announced again")

		// The owner reconnects with a new key: healed.
		func() { defer e.crm.lock(sh)(); sh.keys["key-2"] = true; sh.scopes = nil }()
		_, err = e.svc.Connect(ctx, url, "key-2")
		require.NoError(t, err)
		assert.Equal(t, store.StatusActive, status().Status())
		assert.Equal(t, store.EventReconnected, lastEventOf(t, e.store.Redis).Type)
		assert.Equal(t, map[string]int{connect.KeyCheckHealthy: 1}, check())
	})
}

func TestKeyChecksArePacedEvenlyAndNeverDoubled(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newCaseEnv(t, b)
		const accounts, every = 60, time.Minute
		e.store.SetKeyCheckInterval(every)
		ctx := t.Context()
		for i := range accounts {
			url := fmt.Sprintf("https://shop-%d.retailcrm.ru", i)
			e.shop(url, "key")
			_, err := e.svc.Connect(ctx, url, "key")
			require.NoError(t, err)
		}
		// A second replica on the same Redis, claiming at the same moments.
		other, err := store.New(b.Dial(), b.Prefix, make([]byte, 32))
		require.NoError(t, err)
		t.Cleanup(func() { _ = other.Close() })
		other.SetClock(e.clock)

		e.advance(every) // all are due now: a wave of connections, checked at the pace
		seen := map[string]int{}
		var perSecond []int
		for range 3 * int(every/time.Second) {
			e.advance(time.Second)
			var (
				wg     sync.WaitGroup
				mu     sync.Mutex
				claims int
			)
			for _, s := range []*store.Redis{e.store.Redis, other} {
				wg.Go(func() {
					ids, err := s.ClaimKeyChecks(ctx, every, 100)
					assert.NoError(t, err)
					mu.Lock()
					defer mu.Unlock()
					for _, id := range ids {
						seen[id]++
					}
					claims += len(ids)
				})
			}
			wg.Wait()
			perSecond = append(perSecond, claims)
		}
		assert.Len(t, seen, accounts, "every account is checked")
		first := slices.Collect(func(yield func(int) bool) {
			for _, n := range perSecond[:int(every/time.Second)] {
				if !yield(n) {
					return
				}
			}
		})
		for i, n := range first {
			assert.LessOrEqual(t, n, 2, "second %d: at most accounts/interval (1/s) plus the rounding, across both replicas", i)
		}
		total := 0
		for _, n := range seen {
			total += n
		}
		assert.LessOrEqual(t, total, 3*accounts, "no account is checked more than once an interval")
		for id, n := range seen {
			assert.GreaterOrEqual(t, n, 2, "%s: once per interval", id)
		}
	})
}

// recordingPacer says every turn is now, and remembers whose it was.
type recordingPacer struct {
	mu    sync.Mutex
	turns []string
	full  bool
}

func (p *recordingPacer) Wait(_ context.Context, key string) (time.Duration, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.turns = append(p.turns, key)
	if p.full {
		return 0, errors.New("the shop's queue is full")
	}
	return 0, nil
}

func TestAKeyCheckTakesItsTurnUnderTheShopsRateLimit(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newCaseEnv(t, b)
		const every = time.Hour
		e.store.SetKeyCheckInterval(every)
		pacer := &recordingPacer{}
		e.svc.SetPacer(pacer)
		url := "https://shop.retailcrm.ru"
		sh := e.shop(url, "key-1")
		acc, err := e.svc.Connect(t.Context(), url, "key-1")
		require.NoError(t, err)
		checksBefore := sh.checks

		e.advance(every + time.Minute)
		got, err := e.svc.CheckKeys(t.Context(), e.store, every)
		require.NoError(t, err)
		assert.Equal(t, map[string]int{connect.KeyCheckHealthy: 1}, got)
		assert.Equal(t, []string{acc.ID}, pacer.turns, "the check took the shop's turn")

		pacer.full = true
		e.advance(every + time.Minute)
		got, err = e.svc.CheckKeys(t.Context(), e.store, every)
		require.NoError(t, err)
		assert.Equal(t, map[string]int{connect.KeyCheckFailed: 1}, got, "a busy shop's CRM is not asked")
		assert.Equal(t, checksBefore+1, sh.checks, "only the first check reached the CRM")
	})
}
