package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Pacer spaces the requests sent to each shop's CRM, across every replica:
// the CRM allows an account about ten requests per second, and answers
// more with 429/503. A request takes the next free slot of its shop's
// queue in Redis (GCRA, redis_rate's script: one Lua call, Redis's own
// clock, so replicas need no clock of their own), then sleeps until that slot.
// Slots are handed out in the order requests reach Redis, so a burst is
// sent in order, one request per interval. A request whose slot lies
// further ahead than the bounded wait takes no slot and is refused with
// the time after which one would fit.
//
// The interval is 1/rate plus a 5% margin: the CRM counts requests as
// they arrive, and a request that left on time but met less delay on the
// way than the one before it would otherwise make an eleventh in the
// CRM's second.
type Pacer struct {
	rdb      redis.UniversalClient
	rate     int
	period   time.Duration
	burst    int
	interval time.Duration
	prefix   string
}

// marginPercent widens the interval between two requests to one shop.
const marginPercent = 5

// NewPacer returns a pacer of perSecond requests per key that lets a
// request wait at most maxWait for its slot. Key names start with prefix
// and hold account ids, never credentials.
func NewPacer(rdb redis.UniversalClient, prefix string, perSecond int, maxWait time.Duration) *Pacer {
	period := time.Second * (100 + marginPercent) / 100
	interval := period / time.Duration(perSecond)
	// GCRA with burst b admits a request when its slot is at most
	// (b-1) intervals ahead: b-1 requests may wait their turn.
	burst := int(maxWait/interval) + 1
	return &Pacer{
		rdb: rdb, rate: perSecond, period: period, burst: burst,
		interval: interval,
		prefix:   prefix + ":crmrate:",
	}
}

// QueueFullError refuses a request whose slot would be further ahead than
// the pacer's bounded wait. Nothing was reserved.
type QueueFullError struct {
	RetryAfter time.Duration
}

func (e *QueueFullError) Error() string {
	return fmt.Sprintf("ratelimit: the shop's queue is full; a slot frees up in %s", e.RetryAfter)
}

// Reserve takes key's next free slot and says how long until it; a
// *QueueFullError when it is further than the bounded wait.
func (p *Pacer) Reserve(ctx context.Context, key string) (time.Duration, error) {
	res, err := p.runGCRA(ctx, p.prefix+key)
	return p.slot(res, err)
}

// ReserveAlong queues Reserve's Redis call for key on pipe, so that it
// travels with the caller's own commands (the proxy's account read: one
// round trip on a single Redis; on a Cluster the two keys' nodes are asked
// at once), and returns what reads its outcome once the pipeline has run:
// Reserve's results. pipe must be of the pacer's own Redis. A Redis that
// did not know the script yet (new, restarted, failed over) answered
// NOSCRIPT and took no slot; the reading then sends the script itself
// (EVAL, one more round trip), which takes one.
func (p *Pacer) ReserveAlong(ctx context.Context, pipe redis.Pipeliner, key string) func() (time.Duration, error) {
	keys := []string{gcraKeyPrefix + p.prefix + key}
	cmd := allowN.EvalSha(ctx, pipe, keys, p.gcraArgs()...)
	return func() (time.Duration, error) {
		v, err := cmd.Result()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			v, err = allowN.Eval(ctx, p.rdb, keys, p.gcraArgs()...).Result()
		}
		if err != nil {
			return p.slot(gcraResult{}, err)
		}
		res, err := parseGCRA(v)
		return p.slot(res, err)
	}
}

// slot turns the script's reply into the wait until the request's slot.
func (p *Pacer) slot(res gcraResult, err error) (time.Duration, error) {
	if err != nil {
		return 0, fmt.Errorf("ratelimit: reserve a slot: %w", err)
	}
	if !res.allowed {
		return 0, &QueueFullError{RetryAfter: max(res.retryAfter, p.interval)}
	}
	// resetAfter is when the queue drains after this request; its own slot
	// is one interval before that. Redis's clock counts microseconds; the
	// rest is float rounding.
	return max((res.resetAfter - p.interval).Round(time.Microsecond), 0), nil
}

// Wait reserves key's next slot and sleeps until it. When ctx ends first,
// the slot is lost (the queue behind it is not moved up): the shop's CRM
// gets fewer requests, never more.
func (p *Pacer) Wait(ctx context.Context, key string) (time.Duration, error) {
	d, err := p.Reserve(ctx, key)
	if err != nil || d <= 0 {
		return 0, err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return d, ctx.Err()
	case <-t.C:
		return d, nil
	}
}

// Interval is the time between two requests to one shop.
func (p *Pacer) Interval() time.Duration { return p.interval }

// Slack is how late a request may still go after its turn. What keeps the
// CRM at its rate in any one second is the margin: the turns of one
// second's worth of requests span 5% more than a second, 50 ms, whatever
// the rate; only the difference between how late the first and the last
// of them go eats into it. Slack takes two fifths of that margin for
// lateness and leaves the rest for jitter on the way. A request later
// than Slack should take a new turn.
func (p *Pacer) Slack() time.Duration { return time.Second * marginPercent / 100 * 2 / 5 }
