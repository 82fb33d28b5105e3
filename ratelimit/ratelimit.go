package ratelimit

import (
	"context"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Limiter allows a number of requests per minute for each key, with a burst
// of the same size.
type Limiter struct {
	limiter *redis_rate.Limiter
	limit   redis_rate.Limit
	prefix  string
}

// New returns a limiter of perMinute requests per key. Key names start with
// prefix; they hold client addresses, never credentials.
func New(rdb redis.UniversalClient, prefix string, perMinute int) *Limiter {
	return &Limiter{limiter: redis_rate.NewLimiter(rdb), limit: redis_rate.PerMinute(perMinute), prefix: prefix + ":rl:"}
}

// Allow reports whether one more request for key fits, and if not, when
// to try again.
func (l *Limiter) Allow(ctx context.Context, key string) (bool, time.Duration, error) {
	res, err := l.limiter.Allow(ctx, l.prefix+key, l.limit)
	if err != nil {
		return false, 0, err
	}
	return res.Allowed > 0, res.RetryAfter, nil
}
