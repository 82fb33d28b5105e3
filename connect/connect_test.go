package connect_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/connect"
	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/store/storetest"
)

// flaky fails chosen store calls, to cut a connection short at each step.
type flaky struct {
	*store.Redis
	failBegin, failRecord, failAbort error
}

func (f *flaky) BeginConnect(ctx context.Context, u string, k redact.Secret) (store.Attempt, error) {
	if f.failBegin != nil {
		return store.Attempt{}, f.failBegin
	}
	return f.Redis.BeginConnect(ctx, u, k)
}

func (f *flaky) Record(ctx context.Context, l store.Lease, read store.Account, sy store.Sync) (store.Account, error) {
	if f.failRecord != nil {
		return store.Account{}, f.failRecord
	}
	return f.Redis.Record(ctx, l, read, sy)
}

func (f *flaky) Abort(ctx context.Context, l store.Lease, read store.Account, seq int64, keep bool) (store.AbortOutcome, error) {
	if f.failAbort != nil {
		return "", f.failAbort
	}
	return f.Redis.Abort(ctx, l, read, seq, keep)
}

var errStoreDown = errors.New("redis: connection refused")

type env struct {
	b     *storetest.Backend
	key   []byte
	fake  *crmtest.Fake
	store *flaky
	svc   *connect.Service
	now   time.Time
}

func newEnv(t *testing.T, b *storetest.Backend, opts ...crmtest.Option) *env {
	t.Helper()
	e := &env{b: b, key: make([]byte, 32), fake: crmtest.New(t, opts...), now: time.Now().UTC().Truncate(time.Millisecond)}
	e.restart(t)
	return e
}

// restart builds a new service and store client on the same Redis, as a
// new process would.
func (e *env) restart(t *testing.T) {
	t.Helper()
	s, err := store.New(e.b.Dial(), e.b.Prefix, e.key)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	s.SetClock(func() time.Time { return e.now })
	s.SetTimings(30*time.Second, time.Minute)
	e.store = &flaky{Redis: s}
	client := crm.New(crm.Options{Timeout: time.Second, AllowInsecure: true, RetryWait: time.Millisecond, RetryMaxWait: 2 * time.Millisecond})
	e.svc = connect.New(client, e.store, connect.Module{
		Code: "demo", IntegrationCode: "demo", Name: "Demo", BaseURL: "https://module.test",
		Scopes: []string{"integration_read", "integration_write"},
	}, nil)
	e.svc.SetClock(func() time.Time { return e.now })
}

func (e *env) account(t *testing.T) (store.Account, error) {
	t.Helper()
	return e.store.FindBySystemURL(t.Context(), e.fake.URL)
}

func (e *env) sweep(t *testing.T, after time.Duration) connect.SweepResult {
	t.Helper()
	e.now = e.now.Add(after)
	res, err := e.svc.Sweep(t.Context(), e.now)
	require.NoError(t, err)
	return res
}

func TestConnectActivatesOnlyAfterTheCRMAccepts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b)
		acc, err := e.svc.Connect(t.Context(), e.fake.URL, "key-1")
		require.NoError(t, err)
		assert.Equal(t, store.StatusActive, acc.Status())
		assert.Equal(t, "key-1", acc.APIKey.Reveal())
		require.Len(t, e.fake.Edits(), 1)
		assert.Equal(t, acc.ClientID.Reveal(), e.fake.Edits()[0].Module["clientId"])
	})
}

func TestADefinitiveRefusalLeavesNothingBehind(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, crmtest.Edit("", crmtest.Status(403)))
		_, err := e.svc.Connect(t.Context(), e.fake.URL, "key-1")
		require.ErrorIs(t, err, crm.ErrForbidden)
		_, err = e.account(t)
		assert.ErrorIs(t, err, store.ErrNotFound)
		assert.Equal(t, connect.SweepResult{}, e.sweep(t, 2*time.Minute), "nothing left to sweep")
	})
}

func TestStoreDownBeforeTheCRMCallSendsNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b)
		e.store.failBegin = errStoreDown
		_, err := e.svc.Connect(t.Context(), e.fake.URL, "key-1")
		require.ErrorIs(t, err, errStoreDown)
		assert.Empty(t, e.fake.Edits())
	})
}

func TestCRMOutageLeavesAPendingAccountTheSweeperFinishes(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, crmtest.Edit("key-1", crmtest.Status(503), crmtest.Status(503), crmtest.Status(503), crmtest.Status(503), crmtest.OK()))
		_, err := e.svc.Connect(t.Context(), e.fake.URL, "key-1")
		require.ErrorIs(t, err, crm.ErrUnavailable)
		acc, err := e.account(t)
		require.NoError(t, err)
		assert.Equal(t, store.StatusPending, acc.Status(), "not active, not forgotten")

		assert.Equal(t, connect.SweepResult{}, e.sweep(t, 10*time.Second), "too fresh: a register may still be in flight")
		assert.Equal(t, connect.SweepResult{Completed: 1}, e.sweep(t, 2*time.Minute))
		done, err := e.account(t)
		require.NoError(t, err)
		assert.Equal(t, store.StatusActive, done.Status())
		assert.Equal(t, acc.ClientID, done.ClientID)
		edits := e.fake.Edits()
		assert.Equal(t, edits[0].Module["clientId"], edits[len(edits)-1].Module["clientId"], "the CRM sees the same module")
	})
}

func TestStoreFailureAfterCRMSuccessIsFinishedAfterARestart(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b)
		e.store.failRecord = errStoreDown
		_, err := e.svc.Connect(t.Context(), e.fake.URL, "key-1")
		require.ErrorIs(t, err, errStoreDown)
		acc, err := e.account(t)
		require.NoError(t, err)
		assert.Equal(t, store.StatusPending, acc.Status())

		e.restart(t) // the process dies and comes back
		assert.Equal(t, connect.SweepResult{Completed: 1}, e.sweep(t, 2*time.Minute))
		done, err := e.account(t)
		require.NoError(t, err)
		assert.Equal(t, store.StatusActive, done.Status())
		assert.Equal(t, "key-1", done.APIKey.Reveal())
		assert.Equal(t, acc.ID, done.ID)
	})
}

func TestTheOwnersNextClickFinishesAPendingAccount(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b)
		e.store.failRecord = errStoreDown
		first, err := e.svc.Connect(t.Context(), e.fake.URL, "key-1")
		require.ErrorIs(t, err, errStoreDown, "the CRM accepted, the store did not record it")
		e.store.failRecord = nil
		second, err := e.svc.Connect(t.Context(), e.fake.URL, "key-1")
		require.NoError(t, err)
		assert.Equal(t, first.ID, second.ID)
		assert.Equal(t, first.ClientID, second.ClientID)
		assert.Equal(t, store.StatusActive, second.Status())
	})
}

func TestFailedAbortIsRetriedByTheSweeper(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, crmtest.Edit("", crmtest.Status(401)))
		e.store.failAbort = errStoreDown
		_, err := e.svc.Connect(t.Context(), e.fake.URL, "key-1")
		require.ErrorIs(t, err, crm.ErrUnauthorized)
		acc, err := e.account(t)
		require.NoError(t, err, "the abort could not be written")
		assert.Equal(t, store.StatusPending, acc.Status(), "but the account is not active")

		e.store.failAbort = nil
		assert.Equal(t, connect.SweepResult{Aborted: 1}, e.sweep(t, 2*time.Minute))
		_, err = e.account(t)
		assert.ErrorIs(t, err, store.ErrNotFound)
	})
}

func TestSweeperGivesUpOnACRMThatStaysDown(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, crmtest.Edit("", crmtest.Status(503)))
		e.svc.SetSweepOptions(connect.SweepOptions{GiveUp: time.Hour})
		_, err := e.svc.Connect(t.Context(), e.fake.URL, "key-1")
		require.Error(t, err)
		assert.Equal(t, connect.SweepResult{Retrying: 1}, e.sweep(t, 2*time.Minute))
		assert.Equal(t, connect.SweepResult{Aborted: 1}, e.sweep(t, 2*time.Hour))
		_, err = e.account(t)
		assert.ErrorIs(t, err, store.ErrNotFound)
	})
}

func TestReconnectWithANewKeyDuringAnOutageKeepsTheOldKeyUntilAccepted(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, crmtest.Edit("key-new", crmtest.Status(503), crmtest.Status(503), crmtest.Status(503), crmtest.Status(503), crmtest.OK()))
		old, err := e.svc.Connect(t.Context(), e.fake.URL, "key-old")
		require.NoError(t, err)

		_, err = e.svc.Connect(t.Context(), e.fake.URL, "key-new")
		require.ErrorIs(t, err, crm.ErrUnavailable)
		acc, err := e.account(t)
		require.NoError(t, err)
		assert.Equal(t, "key-old", acc.APIKey.Reveal())
		assert.Equal(t, store.StatusActive, acc.Status(), "the shop stays connected with its proven key")

		assert.Equal(t, connect.SweepResult{Completed: 1}, e.sweep(t, 2*time.Minute))
		acc, err = e.account(t)
		require.NoError(t, err)
		assert.Equal(t, "key-new", acc.APIKey.Reveal())
		assert.Equal(t, old.ClientID, acc.ClientID)
	})
}

func TestDefinitiveSortsFinalFromTransientFailures(t *testing.T) {
	for _, err := range []error{crm.ErrValidation, crm.ErrUnauthorized, crm.ErrForbidden, crm.ErrPaymentRequired, crm.ErrMethodNotFound, crm.ErrNoAccount, crm.ErrBlocked} {
		assert.True(t, connect.Definitive(&crm.Error{Kind: err}), err.Error())
	}
	for _, err := range []error{crm.ErrUnavailable, crm.ErrRateLimited, crm.ErrUnexpected, errStoreDown, context.Canceled} {
		assert.False(t, connect.Definitive(err), err.Error())
	}
}

func TestMoveNeedsTheKeyToWorkAtTheNewAddress(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b)
		acc, err := e.svc.Connect(t.Context(), e.fake.URL, "key-1")
		require.NoError(t, err)
		on := store.State{Active: true}

		elsewhere := crmtest.New(t, crmtest.Scopes("key-1")) // does not know the key
		_, err = e.svc.Activity(t.Context(), acc, on, elsewhere.URL, true)
		require.ErrorIs(t, err, connect.ErrMoveRefused)
		assert.Empty(t, elsewhere.Edits(), "no edit goes to a host where the key is not proven")
		got, err := e.store.Get(t.Context(), acc.ID)
		require.NoError(t, err)
		assert.Equal(t, e.fake.URL, got.SystemURL, "a refused move changes the address not")
		assert.Equal(t, store.EventMoveRefused, lastEventType(t, e))

		third := crmtest.New(t)
		_, err = e.svc.Activity(t.Context(), acc, on, third.URL, false)
		require.ErrorIs(t, err, connect.ErrMoveRefused, "outside the CRM's clouds a move is never followed")
		assert.Empty(t, third.Calls(), "nothing at all is sent to such a host")

		newHome := crmtest.New(t)
		moved, err := e.svc.Activity(t.Context(), acc, on, newHome.URL, true)
		require.NoError(t, err)
		assert.Equal(t, newHome.URL, moved.SystemURL)
		require.Len(t, newHome.Edits(), 1)
		assert.Equal(t, acc.ClientID.Reveal(), newHome.Edits()[0].Module["clientId"])
		events, err := e.store.Events(t.Context(), "", 100)
		require.NoError(t, err)
		assert.Equal(t, store.EventMoved, events[len(events)-1].Type)
		assert.Equal(t, e.fake.URL, events[len(events)-1].PreviousSystemURL)
	})
}

func lastEventType(t *testing.T, e *env) string {
	t.Helper()
	events, err := e.store.Events(t.Context(), "", 1000)
	require.NoError(t, err)
	require.NotEmpty(t, events)
	return events[len(events)-1].Type
}

func TestDeactivateAndResyncNeedAConnectedAccount(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, crmtest.Edit("", crmtest.Status(503)))
		_, err := e.svc.Connect(t.Context(), e.fake.URL, "key-1")
		require.Error(t, err)
		acc, err := e.account(t)
		require.NoError(t, err)
		_, err = e.svc.Resync(t.Context(), acc.ID)
		assert.ErrorIs(t, err, connect.ErrNotConnected)
		_, err = e.svc.Deactivate(t.Context(), acc.ID, false)
		assert.ErrorIs(t, err, connect.ErrNotConnected)
		_, err = e.svc.Resync(t.Context(), "01AAAAAAAAAAAAAAAAAAAAAAAA")
		assert.ErrorIs(t, err, store.ErrNotFound)
	})
}

func TestAKeyTheCRMDoesNotKnowIsRefusedBeforeAnythingIsStored(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, crmtest.Scopes("key-unknown")) // nil scopes: the fake answers 403
		_, err := e.svc.Connect(t.Context(), e.fake.URL, "key-unknown")
		require.ErrorIs(t, err, connect.ErrUnknownKey)
		assert.Empty(t, e.fake.Edits(), "no edit for an unknown key")
		assert.Empty(t, b.Keys(t), "nothing stored")
	})
}

func TestAKeyWithoutTheModulesScopesIsRefusedNamingThem(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, crmtest.Scopes("key-narrow", "integration_read", "order_read"))
		_, err := e.svc.Connect(t.Context(), e.fake.URL, "key-narrow")
		require.ErrorIs(t, err, connect.ErrMissingScopes)
		var se *connect.ScopeError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, []string{"integration_write"}, se.Missing)
		assert.Equal(t, "integration_write", se.Reason())
		assert.Empty(t, e.fake.Edits())
		assert.Empty(t, b.Keys(t))
	})
}

func TestCredentialsOutageStoresNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b)
		down := crmtest.New(t) // a CRM that is gone by the time we call it
		down.Close()
		_, err := e.svc.Connect(t.Context(), down.URL, "key-1")
		require.ErrorIs(t, err, crm.ErrUnavailable)
		assert.Empty(t, b.Keys(t))
	})
}

func TestAnOlderCRMWithoutScopesStillConnects(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		pair := crmtest.Fixture(t, "credentials-ok-without-scopes")
		e := newEnv(t, b, crmtest.Credentials("key-1", pair.Reply()))
		acc, err := e.svc.Connect(t.Context(), e.fake.URL, "key-1")
		require.NoError(t, err)
		assert.Equal(t, store.StatusActive, acc.Status())
	})
}

// A lease another replica holds past what the caller can wait is "busy",
// not a CRM outage: the CRM was never asked, so nothing is sent and the
// account is as it was; once the lease is back, the same call works.
func TestALeaseHeldPastTheWaitIsBusyNotACRMOutage(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b)
		acc, err := e.svc.Connect(t.Context(), e.fake.URL, "key-1")
		require.NoError(t, err)
		edits := len(e.fake.Edits())
		// The wait is bounded by one lease's life; the other holder's lease
		// is judged by the fake clock, which stands still, so it never ends
		// by itself. It is taken before the life is shortened: its
		// backstop in Redis (twice the life, in real time) then outlasts
		// the test on a loaded machine too. Nothing has to succeed first:
		// the bound on the waits can be short.
		_, other, _, err := e.store.Acquire(t.Context(), acc.ID)
		require.NoError(t, err)
		e.store.SetTimings(50*time.Millisecond, 0)

		_, err = e.svc.Deactivate(t.Context(), acc.ID, false)
		require.ErrorIs(t, err, connect.ErrBusy)
		assert.NotErrorIs(t, err, crm.ErrUnavailable, "the CRM was never asked")
		assert.False(t, connect.Definitive(err), "trying again later works")
		got, err := e.store.Get(t.Context(), acc.ID)
		require.NoError(t, err)
		assert.True(t, got.Want.Active && got.Active, "the switch-off was neither sent nor recorded")
		_, err = e.svc.Connect(t.Context(), e.fake.URL, "key-2")
		require.ErrorIs(t, err, connect.ErrBusy)
		assert.NotErrorIs(t, err, crm.ErrUnavailable)
		assert.Len(t, e.fake.Edits(), edits, "no edit while another exchange holds the shop")
		got, err = e.store.Get(t.Context(), acc.ID)
		require.NoError(t, err)
		assert.Equal(t, "key-2", got.PendingAPIKey.Reveal(), "the register's attempt stays for the sweeper")
		assert.Equal(t, "key-1", got.APIKey.Reveal())

		require.NoError(t, e.store.Release(t.Context(), other))
		done, err := e.svc.Deactivate(t.Context(), acc.ID, false)
		require.NoError(t, err)
		assert.Equal(t, store.StatusInactive, done.Status())
	})
}

// A move that cannot take the shop's lease (another exchange holds it past
// the wait) still applies the callback's switch: it happened in the CRM.
// The move itself is left for the CRM's next call.
func TestAMoveThatFindsTheShopBusyStillAppliesTheSwitch(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b)
		acc, err := e.svc.Connect(t.Context(), e.fake.URL, "key-1")
		require.NoError(t, err)
		_, other, _, err := e.store.Acquire(t.Context(), acc.ID) // before the short life: see above
		require.NoError(t, err)
		e.store.SetTimings(50*time.Millisecond, 0)

		newHome := crmtest.New(t)
		_, err = e.svc.Activity(t.Context(), acc, store.State{}, newHome.URL, true)
		require.ErrorIs(t, err, connect.ErrBusy)
		assert.Empty(t, newHome.Calls(), "nothing goes to the new host without the lease")
		got, err := e.store.Get(t.Context(), acc.ID)
		require.NoError(t, err)
		assert.False(t, got.Want.Active, "the switch-off is the intention")
		assert.Equal(t, e.fake.URL, got.SystemURL, "the move is not recorded")
		require.NoError(t, e.store.Release(t.Context(), other))
	})
}
