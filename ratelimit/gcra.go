package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// allowN is redis_rate's GCRA script (github.com/go-redis/redis_rate v10,
// BSD-2-Clause, after Pavel Pravosud's redis-gcra, MIT), byte for byte: the
// same SHA, the same key ("rate:" + key) and the same stored value (the
// theoretical arrival time in seconds since 2017), so a replica of an
// earlier release, which called redis_rate, shares each shop's queue with
// this one. The pacer runs it itself only because redis_rate runs it and
// reads its reply in one call: the proxy queues it in the pipeline that
// reads the account, one round trip for both.
var allowN = redis.NewScript(`
-- this script has side-effects, so it requires replicate commands mode
redis.replicate_commands()

local rate_limit_key = KEYS[1]
local burst = ARGV[1]
local rate = ARGV[2]
local period = ARGV[3]
local cost = tonumber(ARGV[4])

local emission_interval = period / rate
local increment = emission_interval * cost
local burst_offset = emission_interval * burst

-- redis returns time as an array containing two integers: seconds of the epoch
-- time (10 digits) and microseconds (6 digits). for convenience we need to
-- convert them to a floating point number. the resulting number is 16 digits,
-- bordering on the limits of a 64-bit double-precision floating point number.
-- adjust the epoch to be relative to Jan 1, 2017 00:00:00 GMT to avoid floating
-- point problems. this approach is good until "now" is 2,483,228,799 (Wed, 09
-- Sep 2048 01:46:39 GMT), when the adjusted value is 16 digits.
local jan_1_2017 = 1483228800
local now = redis.call("TIME")
now = (now[1] - jan_1_2017) + (now[2] / 1000000)

local tat = redis.call("GET", rate_limit_key)

if not tat then
  tat = now
else
  tat = tonumber(tat)
end

tat = math.max(tat, now)

local new_tat = tat + increment
local allow_at = new_tat - burst_offset

local diff = now - allow_at
local remaining = diff / emission_interval

if remaining < 0 then
  local reset_after = tat - now
  local retry_after = diff * -1
  return {
    0, -- allowed
    0, -- remaining
    tostring(retry_after),
    tostring(reset_after),
  }
end

local reset_after = new_tat - now
if reset_after > 0 then
  redis.call("SET", rate_limit_key, new_tat, "EX", math.ceil(reset_after))
end
local retry_after = -1
return {cost, remaining, tostring(retry_after), tostring(reset_after)}
`)

// gcraKeyPrefix is redis_rate's prefix of its keys.
const gcraKeyPrefix = "rate:"

// gcraResult is what allowN answered for one request.
type gcraResult struct {
	allowed    bool
	retryAfter time.Duration // when refused: until a slot fits
	resetAfter time.Duration // until the queue drains, this request's slot included
}

// parseGCRA reads allowN's reply: {allowed, remaining, retry_after,
// reset_after}, the last two seconds as strings.
func parseGCRA(v any) (gcraResult, error) {
	vals, ok := v.([]any)
	if !ok || len(vals) != 4 {
		return gcraResult{}, fmt.Errorf("ratelimit: unexpected reply %T from the rate script", v)
	}
	allowed, ok := vals[0].(int64)
	if !ok {
		return gcraResult{}, fmt.Errorf("ratelimit: unexpected reply %T from the rate script", vals[0])
	}
	var secs [2]float64
	for i, x := range vals[2:] {
		s, ok := x.(string)
		if !ok {
			return gcraResult{}, fmt.Errorf("ratelimit: unexpected reply %T from the rate script", x)
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return gcraResult{}, fmt.Errorf("ratelimit: unexpected reply from the rate script: %w", err)
		}
		secs[i] = f
	}
	return gcraResult{allowed: allowed > 0, retryAfter: seconds(secs[0]), resetAfter: seconds(secs[1])}, nil
}

// seconds is redis_rate's dur: -1 (the script's "none") stays -1 ns.
func seconds(f float64) time.Duration {
	if f == -1 {
		return -1
	}
	return time.Duration(f * float64(time.Second))
}

// gcraArgs are allowN's ARGV for one request under limit.
func (p *Pacer) gcraArgs() []any {
	return []any{p.burst, p.rate, p.period.Seconds(), 1}
}

// runGCRA runs allowN for key alone (EVALSHA, EVAL when Redis does not know
// it yet).
func (p *Pacer) runGCRA(ctx context.Context, key string) (gcraResult, error) {
	v, err := allowN.Run(ctx, p.rdb, []string{gcraKeyPrefix + key}, p.gcraArgs()...).Result()
	if err != nil {
		return gcraResult{}, err
	}
	return parseGCRA(v)
}
