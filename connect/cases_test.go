package connect_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/connect"
	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/store/storetest"
)

// The cases of issue 12, each reproduced before the account-state rework,
// against the model CRM of model_test.go.

// hooked is a store whose Abort can be paused, to act in between.
type hooked struct {
	*store.Redis
	beforeAbort func()
}

func (h *hooked) Abort(ctx context.Context, l store.Lease, read store.Account, seq int64, keep bool) (store.AbortOutcome, error) {
	if h.beforeAbort != nil {
		h.beforeAbort()
	}
	return h.Redis.Abort(ctx, l, read, seq, keep)
}

type caseEnv struct {
	crm   *modelCRM
	store *hooked
	svc   *connect.Service
	now   time.Time
	mu    sync.Mutex
}

func newCaseEnv(t *testing.T, b *storetest.Backend) *caseEnv {
	e := &caseEnv{crm: newModelCRM(), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, err := store.New(b.Dial(), b.Prefix, make([]byte, 32))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	s.SetClock(e.clock)
	s.SetTimings(30*time.Second, time.Minute)
	e.store = &hooked{Redis: s}
	e.svc = connect.New(e.crm, e.store, connect.Module{Code: "demo", Name: "Demo", BaseURL: "https://module.test",
		Scopes: []string{"integration_read", "integration_write"}}, nil)
	e.svc.SetClock(e.clock)
	return e
}

func (e *caseEnv) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *caseEnv) advance(d time.Duration) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = e.now.Add(d)
	return e.now
}

func (e *caseEnv) shop(url string, keys ...string) *crmShop {
	sh := e.crm.add(url)
	for _, k := range keys {
		sh.keys[k] = true
	}
	return sh
}

func (e *caseEnv) setMode(sh *crmShop, m crmMode) {
	defer e.crm.lock(sh)()
	sh.mode = m
}

func TestTheSweeperNeverOverridesASwitchOff(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newCaseEnv(t, b)
		ctx := t.Context()
		url := "https://shop.retailcrm.ru"
		sh := e.shop(url, "key-1")
		e.setMode(sh, lost) // the CRM takes the edit, its reply is lost
		_, err := e.svc.Connect(ctx, url, "key-1")
		require.ErrorIs(t, err, crm.ErrUnavailable)
		require.True(t, sh.state.Active)

		// The owner switches the module off in the CRM; the CRM calls back.
		acc, err := e.store.FindBySystemURL(ctx, url)
		require.NoError(t, err)
		func() { defer e.crm.lock(sh)(); sh.state = store.State{} }()
		_, err = e.svc.Activity(ctx, acc, store.State{}, "", false)
		require.NoError(t, err)

		e.setMode(sh, accept)
		res, err := e.svc.Sweep(ctx, e.advance(2*time.Minute))
		require.NoError(t, err)
		assert.Equal(t, 1, res.Completed)
		assert.False(t, sh.state.Active, "the sweeper finished the connection with the owner's switch-off, not a hard-coded on")
		got, err := e.store.Get(ctx, acc.ID)
		require.NoError(t, err)
		assert.Equal(t, store.StatusInactive, got.Status())
		assert.Equal(t, "key-1", got.APIKey.Reveal())
		assert.True(t, got.InSync())
	})
}

func TestAnOlderAttemptNeverOverwritesANewerKey(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newCaseEnv(t, b)
		ctx := t.Context()
		url := "https://shop.retailcrm.ru"
		sh := e.shop(url, "key-A", "key-B")
		e.setMode(sh, timeout)
		_, err := e.svc.Connect(ctx, url, "key-A")
		require.ErrorIs(t, err, crm.ErrUnavailable, "attempt A is left to the sweeper")
		e.setMode(sh, accept)
		acc, err := e.svc.Connect(ctx, url, "key-B")
		require.NoError(t, err)
		assert.Equal(t, "key-B", acc.APIKey.Reveal())

		res, err := e.svc.Sweep(ctx, e.advance(2*time.Minute))
		require.NoError(t, err)
		assert.Zero(t, res.Completed, "attempt A was superseded: nothing of it is finished")
		got, err := e.store.Get(ctx, acc.ID)
		require.NoError(t, err)
		assert.Equal(t, "key-B", got.APIKey.Reveal())
		assert.True(t, got.PendingAPIKey.IsZero())
	})
}

// gated is another replica's store whose lease requests wait for gate;
// waiting is closed when the first one does.
type gated struct {
	*store.Redis
	gate, waiting chan struct{}
	once          sync.Once
}

func (g *gated) Acquire(ctx context.Context, id string) (store.Account, store.Lease, []string, error) {
	g.once.Do(func() { close(g.waiting) })
	<-g.gate
	return g.Redis.Acquire(ctx, id)
}

// Case 4 across replicas: the older attempt (A, replica 1) and a newer one
// (B, replica 2) both wait while someone holds the account; B gets it
// first and the CRM accepts it, then A gets its turn and the CRM accepts
// A's key too. B's key stays: a newer attempt always wins, whatever order
// the acceptances are recorded in.
func TestAnOlderAttemptAcceptedAfterANewerOneNeverReplacesItsKey(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newCaseEnv(t, b)
		ctx := t.Context()
		url := "https://shop.retailcrm.ru"
		sh := e.shop(url, "key-0", "key-A", "key-B")
		acc, err := e.svc.Connect(ctx, url, "key-0")
		require.NoError(t, err)
		replica1 := &gated{Redis: e.store.Redis, gate: make(chan struct{}), waiting: make(chan struct{})}
		older := connect.New(e.crm, replica1, connect.Module{Code: "demo", Name: "Demo", BaseURL: "https://module.test",
			Scopes: []string{"integration_read", "integration_write"}}, nil)
		older.SetClock(e.clock)

		_, held, _, err := e.store.Acquire(ctx, acc.ID) // the sweeper, say
		require.NoError(t, err)
		doneA, doneB := make(chan error, 1), make(chan error, 1)
		go func() { _, err := older.Connect(ctx, url, "key-A"); doneA <- err }()
		<-replica1.waiting // A's attempt is recorded; it waits for the lease
		seqA := func() int64 { a, err := e.store.Get(ctx, acc.ID); require.NoError(t, err); return a.PendingSeq }()
		go func() { _, err := e.svc.Connect(ctx, url, "key-B"); doneB <- err }()
		require.Eventually(t, func() bool { // B's attempt is recorded (it then waits for the lease)
			got, err := e.store.Get(ctx, acc.ID)
			return err == nil && got.PendingSeq > seqA
		}, 10*time.Second, time.Millisecond)
		require.NoError(t, e.store.Release(ctx, held))
		require.NoError(t, <-doneB, "B gets the account first")
		close(replica1.gate)
		require.NoError(t, <-doneA, "then A")

		got, err := e.store.Get(ctx, acc.ID)
		require.NoError(t, err)
		require.True(t, sh.accepted["key-A"] && sh.accepted["key-B"], "the CRM accepted both keys")
		assert.Equal(t, "key-B", got.APIKey.Reveal(), "the newer attempt's key stays")
		assert.Equal(t, seqA+1, got.KeySeq)
		assert.True(t, got.PendingAPIKey.IsZero())
	})
}

func TestTheGiveUpNeverDeletesAnAccountAFreshRegisterIsUsing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newCaseEnv(t, b)
		e.svc.SetSweepOptions(connect.SweepOptions{GiveUp: 24 * time.Hour})
		ctx := t.Context()
		url := "https://shop.retailcrm.ru"
		sh := e.shop(url, "key-1")
		e.setMode(sh, timeout)
		_, err := e.svc.Connect(ctx, url, "key-1")
		require.ErrorIs(t, err, crm.ErrUnavailable)
		acc, err := e.store.FindBySystemURL(ctx, url)
		require.NoError(t, err)
		e.setMode(sh, accept)

		// The sweeper has taken the day-old attempt and is about to drop
		// it when the owner presses Connect again with the same key.
		registered := make(chan error, 1)
		e.store.beforeAbort = func() {
			e.store.beforeAbort = nil
			go func() {
				_, err := e.svc.Connect(ctx, url, "key-1")
				registered <- err
			}()
			require.Eventually(t, func() bool { // the fresh attempt is recorded (it then waits for the lease)
				got, err := e.store.Get(ctx, acc.ID)
				return err == nil && got.PendingSeq > acc.PendingSeq
			}, 10*time.Second, time.Millisecond)
		}
		res, err := e.svc.Sweep(ctx, e.advance(25*time.Hour))
		require.NoError(t, err)
		assert.Equal(t, 1, res.Aborted, "the sweeper gave its own attempt up")
		require.NoError(t, <-registered, "the fresh register still succeeds")
		got, err := e.store.Get(ctx, acc.ID)
		require.NoError(t, err, "and its account is still there")
		assert.Equal(t, acc.ClientID, got.ClientID, "under the clientId the CRM knows")
		assert.Equal(t, store.StatusActive, got.Status())
		assert.Equal(t, acc.ClientID.Reveal(), sh.clientID)
	})
}

func TestOneShopsDeadCRMNeverDelaysAnothersCompletion(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newCaseEnv(t, b)
		const dead, batch, conc = 120, 100, 8
		e.svc.SetSweepOptions(connect.SweepOptions{Batch: batch, Concurrency: conc})
		ctx := t.Context()
		// The dead CRMs answer nothing; every edit waits until 8 are under
		// way at once, which proves the sweeper works on 8 shops at a time.
		barrier := make(chan struct{})
		for i := range dead {
			url := fmt.Sprintf("https://dead-%d.retailcrm.ru", i)
			sh := e.shop(url, "key")
			e.setMode(sh, timeout)
			_, err := e.svc.Connect(ctx, url, "key")
			require.ErrorIs(t, err, crm.ErrUnavailable)
			sh.hold = barrier
			e.advance(time.Millisecond)
		}
		live := e.shop("https://live.retailcrm.ru", "key")
		e.setMode(live, timeout)
		_, err := e.svc.Connect(ctx, "https://live.retailcrm.ru", "key")
		require.ErrorIs(t, err, crm.ErrUnavailable)
		e.setMode(live, accept)
		go func() {
			for {
				e.crm.mu.Lock()
				n := e.crm.inFlight
				e.crm.mu.Unlock()
				if n >= conc {
					close(barrier)
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Millisecond): // polling a counter, not timing the test
				}
			}
		}()
		sweepCtx, cancel := context.WithTimeout(ctx, 30*time.Second) // fewer than 8 at once never opens the barrier
		defer cancel()
		first, err := e.svc.Sweep(sweepCtx, e.advance(2*time.Minute))
		require.NoError(t, err, "the sweeper worked on 8 shops at once")
		assert.Equal(t, batch, first.Retrying, "the oldest %d, all dead", batch)
		assert.Equal(t, conc, e.crm.maxInFlight, "and never on more")
		second, err := e.svc.Sweep(ctx, e.advance(30*time.Second))
		require.NoError(t, err)
		assert.Equal(t, 1, second.Completed, "the live shop's turn came before the dead ones' retries")
		acc, err := e.store.FindBySystemURL(ctx, "https://live.retailcrm.ru")
		require.NoError(t, err)
		assert.Equal(t, store.StatusActive, acc.Status())
	})
}

func TestAnUnreadableAccountNeverStopsTheSweeper(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newCaseEnv(t, b)
		ctx := t.Context()
		for _, url := range []string{"https://a.retailcrm.ru", "https://b.retailcrm.ru"} {
			sh := e.shop(url, "key")
			e.setMode(sh, timeout)
			_, err := e.svc.Connect(ctx, url, "key")
			require.ErrorIs(t, err, crm.ErrUnavailable)
			e.setMode(sh, accept)
		}
		bad, err := e.store.FindBySystemURL(ctx, "https://a.retailcrm.ru")
		require.NoError(t, err)
		require.NoError(t, b.Raw.HSet(ctx, "{"+b.Prefix+"}:acct:"+bad.ID, "pkey", "\x01not sealed").Err())
		res, err := e.svc.Sweep(ctx, e.advance(2*time.Minute))
		require.NoError(t, err)
		assert.Equal(t, 1, res.Unreadable)
		assert.Equal(t, 1, res.Completed, "the other account is finished")
	})
}

// Same-shop registers never fail with "busy": 8 clients, 50 each, one shop.
func TestConcurrentRegistersForOneShopAllSucceed(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newCaseEnv(t, b)
		ctx := t.Context()
		url := "https://shop.retailcrm.ru"
		e.shop(url, "key-1")
		const clients, each = 8, 50
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
			ids  = map[string]bool{}
			cids = map[string]bool{}
		)
		for range clients {
			wg.Go(func() {
				for range each {
					acc, err := e.svc.Connect(ctx, url, redact.Secret("key-1"))
					mu.Lock()
					if err != nil {
						errs = append(errs, err)
					} else {
						ids[acc.ID], cids[acc.ClientID.Reveal()] = true, true
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		assert.Empty(t, errs, "0 failures")
		assert.Len(t, ids, 1, "one account")
		assert.Len(t, cids, 1, "one clientId")
		acc, err := e.store.FindBySystemURL(ctx, url)
		require.NoError(t, err)
		assert.Equal(t, store.StatusActive, acc.Status())
		assert.True(t, acc.PendingAPIKey.IsZero())
	})
}
