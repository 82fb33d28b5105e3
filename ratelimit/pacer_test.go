package ratelimit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/ratelimit"
	"github.com/modulehub/simpleconnect/store/storetest"
)

// Slots are handed out one interval apart, in the order requests come, to
// every replica from one queue per key: the waits grow by an interval per
// request, whichever pacer (replica) asked.
func TestPacerHandsOutSlotsInOrderAcrossReplicas(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		a := ratelimit.NewPacer(b.Dial(), b.Prefix, 10, 5*time.Second)
		other := ratelimit.NewPacer(b.Dial(), b.Prefix, 10, 5*time.Second)
		interval := a.Interval()
		require.Equal(t, 105*time.Millisecond, interval, "1/rate plus the 5% margin")

		start := time.Now()
		var waits []time.Duration
		for i := range 8 {
			p := a
			if i%2 == 1 {
				p = other
			}
			d, err := p.Reserve(t.Context(), "acct-1")
			require.NoError(t, err)
			waits = append(waits, d)
		}
		elapsed := time.Since(start)
		for k, d := range waits {
			want := time.Duration(k) * interval
			assert.LessOrEqual(t, d, want, "slot %d", k)
			assert.GreaterOrEqual(t, d, want-elapsed, "slot %d is its own, not a shared one", k)
		}
		d, err := a.Reserve(t.Context(), "acct-2")
		require.NoError(t, err)
		assert.Zero(t, d, "another account has a queue of its own")
	})
}

// Past the bounded wait a request is refused and takes no slot. The pacer
// reads Redis's clock, so the outcome depends on how much time passes
// between the calls: at one request per second (an interval of 1.05 s)
// the test holds unless the machine stalls for a second between two Redis
// calls. On miniredis the clock is stood still, and moved by hand.
func TestPacerRefusesPastTheBoundedWaitAndReservesNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		p := ratelimit.NewPacer(b.Dial(), b.Prefix, 1, 1500*time.Millisecond) // a slot now and one an interval ahead
		interval := p.Interval()
		require.Equal(t, 1050*time.Millisecond, interval)
		t0 := time.Now()
		if b.MR != nil {
			b.MR.SetTime(t0)
		}
		for range 2 {
			_, err := p.Reserve(t.Context(), "acct")
			require.NoError(t, err)
		}
		_, err := p.Reserve(t.Context(), "acct")
		var full *ratelimit.QueueFullError
		require.True(t, errors.As(err, &full), "got %v", err)
		assert.Greater(t, full.RetryAfter, time.Duration(0))
		assert.LessOrEqual(t, full.RetryAfter, 2*interval)

		_, err = p.Reserve(t.Context(), "acct")
		var again *ratelimit.QueueFullError
		require.True(t, errors.As(err, &again), "a refusal took no slot, so the next is refused the same way")
		// Had the first refusal taken a slot, the next free one would be an
		// interval later.
		assert.LessOrEqual(t, again.RetryAfter, full.RetryAfter+interval/2, "the next refusal names no later time")

		if b.MR != nil {
			// One interval on, exactly one slot has freed: the refusals took
			// none of it. (A millisecond past it: the limiter computes in
			// floating-point seconds, and exactly on the boundary a rounding
			// error may put the slot a hair ahead.)
			b.MR.SetTime(t0.Add(interval + time.Millisecond))
			d, err := p.Reserve(t.Context(), "acct")
			require.NoError(t, err, "the slot the refusals did not take")
			assert.InDelta(t, float64(interval-time.Millisecond), float64(d), float64(time.Millisecond), "its turn is the next interval's")
			_, err = p.Reserve(t.Context(), "acct")
			require.True(t, errors.As(err, &full), "and only that one: got %v", err)
		}
	})
}

func TestPacerWaitEndsWithTheCaller(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		p := ratelimit.NewPacer(b.Dial(), b.Prefix, 1, 10*time.Second)
		_, err := p.Wait(t.Context(), "acct") // the first slot is now
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err = p.Wait(ctx, "acct")
		assert.ErrorIs(t, err, context.Canceled, "a caller who left does not wait out its slot")
	})
}

func TestSlackIsPartOfTheMarginWhateverTheRate(t *testing.T) {
	for _, rate := range []int{1, 10, 1000, 1_000_000} {
		p := ratelimit.NewPacer(nil, "x", rate, time.Second)
		assert.Equal(t, 20*time.Millisecond, p.Slack(), "rate %d", rate)
		assert.Less(t, p.Slack(), time.Second*5/100, "under the margin one second's turns carry")
	}
}
