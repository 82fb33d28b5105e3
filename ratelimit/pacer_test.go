package ratelimit_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
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

// A reservation queued on a pipeline (the proxy's, with the account's
// read) takes its place in the same queue as Reserve's, in order.
func TestReserveAlongTakesTheNextSlotInThePipelinesRoundTrip(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		rdb := b.Dial()
		defer rdb.Close()
		p := ratelimit.NewPacer(rdb, b.Prefix, 10, 5*time.Second)
		interval := p.Interval()

		start := time.Now()
		first, err := p.Reserve(t.Context(), "acct")
		require.NoError(t, err)
		// The caller's own command names a key of another hash slot, as the
		// proxy's account read does: on a Cluster the pipeline is split by
		// node.
		pipe := rdb.Pipeline()
		own := pipe.Set(t.Context(), "{"+b.Prefix+"}:along", "1", time.Minute)
		read := p.ReserveAlong(t.Context(), pipe, "acct")
		_, err = pipe.Exec(t.Context())
		require.NoError(t, err)
		require.NoError(t, own.Err(), "the caller's own command ran in the same pipeline")
		second, err := read()
		require.NoError(t, err)
		third, err := p.Reserve(t.Context(), "acct")
		require.NoError(t, err)
		elapsed := time.Since(start)

		assert.LessOrEqual(t, first, time.Duration(0))
		for k, d := range []time.Duration{second, third} {
			want := time.Duration(k+1) * interval
			assert.LessOrEqual(t, d, want, "slot %d", k+1)
			assert.GreaterOrEqual(t, d, want-elapsed, "slot %d is its own", k+1)
		}
	})
}

// A Redis that has not seen the script (new, restarted, failed over)
// answers the pipelined call NOSCRIPT and takes no slot; the reading then
// takes exactly one. On miniredis, whose scripts are its own: flushing a
// shared Redis's scripts would touch other tests.
func TestReserveAlongTakesOneSlotWhenRedisDidNotKnowTheScript(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		if b.MR == nil {
			t.Skip("flushes Redis's scripts: miniredis only")
		}
		rdb := b.Dial()
		defer rdb.Close()
		b.MR.SetTime(time.Now())
		p := ratelimit.NewPacer(rdb, b.Prefix, 1, 10*time.Second)
		_, err := p.Reserve(t.Context(), "acct") // the first slot, now; the script is known
		require.NoError(t, err)
		require.NoError(t, rdb.ScriptFlush(t.Context()).Err())

		pipe := rdb.Pipeline()
		read := p.ReserveAlong(t.Context(), pipe, "acct")
		_, err = pipe.Exec(t.Context())
		require.Error(t, err, "NOSCRIPT: the pipelined call ran nothing")
		d, err := read()
		require.NoError(t, err)
		assert.Equal(t, p.Interval(), d, "the second slot, taken once the script was sent")

		d, err = p.Reserve(t.Context(), "acct")
		require.NoError(t, err)
		assert.Equal(t, 2*p.Interval(), d, "the third: the NOSCRIPT answer took none")
	})
}

// A replica of an earlier release reserved through redis_rate; during a
// rolling deploy it and this one must share each shop's queue.
func TestPacerSharesTheQueueWithRedisRate(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		rdb := b.Dial()
		defer rdb.Close()
		if b.MR != nil {
			b.MR.SetTime(time.Now())
		}
		p := ratelimit.NewPacer(rdb, b.Prefix, 1, 10*time.Second)
		old := redis_rate.NewLimiter(rdb)
		limit := redis_rate.Limit{Rate: 1, Period: 1050 * time.Millisecond, Burst: 10}
		require.Equal(t, limit.Period, p.Interval(), "the limit an earlier release's pacer used")

		res, err := old.Allow(t.Context(), b.Prefix+":crmrate:acct", limit)
		require.NoError(t, err)
		require.Equal(t, 1, res.Allowed)
		start := time.Now()
		d, err := p.Reserve(t.Context(), "acct")
		require.NoError(t, err)
		assert.LessOrEqual(t, d, p.Interval(), "the slot after the old replica's")
		assert.Greater(t, d, p.Interval()-time.Since(start)-50*time.Millisecond, "not a queue of its own")

		res, err = old.Allow(t.Context(), b.Prefix+":crmrate:acct", limit)
		require.NoError(t, err)
		assert.InDelta(t, float64(3*p.Interval()), float64(res.ResetAfter), float64(100*time.Millisecond),
			"and the old replica's next slot is the third")
	})
}
