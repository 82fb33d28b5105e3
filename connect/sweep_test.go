package connect_test

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/connect"
	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/seal"
	"github.com/modulehub/simpleconnect/store"
)

// TestRunSweeperFinishesAPendingConnectionOnItsOwn runs the loop app.Serve
// starts, not Sweep: nobody calls anything after the CRM outage, and the
// account must still end up active. The interval is a millisecond so that
// the test waits on the sweeper's own report (OnSweep), never on a clock.
func TestRunSweeperFinishesAPendingConnectionOnItsOwn(t *testing.T) {
	fake := crmtest.New(t, crmtest.Edit("key-1", crmtest.Status(503), crmtest.Status(503), crmtest.Status(503), crmtest.Status(503), crmtest.OK()))
	s, err := store.New(redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()}), "test", seal.NewRandomKey())
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	s.SetTimings(time.Second, time.Millisecond) // due for a retry a millisecond after the outage
	svc := connect.New(crm.New(crm.Options{Timeout: 5 * time.Second, AllowInsecure: true, RetryWait: time.Millisecond, RetryMaxWait: 2 * time.Millisecond}),
		s, connect.Module{Code: "demo", IntegrationCode: "demo", Name: "Demo", BaseURL: "https://module.test", Scopes: []string{"integration_read"}}, nil)

	_, err = svc.Connect(t.Context(), fake.URL, "key-1")
	require.ErrorIs(t, err, crm.ErrUnavailable, "every attempt of the register met the outage")
	pending, err := s.FindBySystemURL(t.Context(), fake.URL)
	require.NoError(t, err)
	require.Equal(t, store.StatusPending, pending.Status())

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	sweeps := make(chan connect.SweepResult)
	svc.OnSweep = func(r connect.SweepResult) {
		select {
		case sweeps <- r:
		case <-ctx.Done():
		}
	}
	stopped := make(chan struct{})
	go func() { svc.RunSweeper(ctx, time.Second); close(stopped) }() // each sweep gets one interval

	deadline := time.After(10 * time.Second) // a bound for a broken sweeper, not a pace
	for done := false; !done; {
		select {
		case r := <-sweeps:
			done = r.Completed == 1
			if !done {
				require.Zero(t, r.Aborted+r.Abandoned, "the sweeper does not give up on it: %+v", r)
			}
		case <-deadline:
			t.Fatal("RunSweeper reported no completed connection within 10s")
		}
	}
	acc, err := s.Get(t.Context(), pending.ID)
	require.NoError(t, err)
	assert.Equal(t, store.StatusActive, acc.Status())
	assert.Equal(t, "key-1", acc.APIKey.Reveal())
	edits := fake.Edits()
	assert.Equal(t, pending.ClientID.Reveal(), edits[len(edits)-1].Module["clientId"], "the sweeper sent the same module again")

	cancel()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("RunSweeper did not return after its context ended")
	}
}
