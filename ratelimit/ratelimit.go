package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/modulehub/simpleconnect/redact"
)

// Verdict is what Failures says about one more failure from an address.
type Verdict struct {
	// Over: the address has used its budget; refuse the failure fast.
	Over bool
	// RetryAfter is when the budget has room again (when Over).
	RetryAfter time.Duration
	// First: news worth a log line. This replica has just learnt the
	// address is over, and has not said so for it in the last minute: one
	// line per address and minute, not one per refused request.
	First bool
}

// Failures counts failed requests per client address.
type Failures struct {
	limiter *redis_rate.Limiter
	limit   redis_rate.Limit
	prefix  string
	now     func() time.Time

	// over remembers, per replica, the addresses Redis said are over their
	// budget, until when, and when that was last reported: their failures
	// are refused without even the limiter's round trip until then. Bounded:
	// when full, nothing more is remembered and Redis is asked, which is
	// only slower.
	mu   sync.Mutex
	over map[string]overBudget
}

type overBudget struct{ until, reported time.Time }

// maxRemembered bounds Failures.over.
const maxRemembered = 10_000

// NewFailures allows perMinute failures per client address, in a burst of
// the same size. Key names start with prefix and hold the address (or, for
// IPv6, its /64), never a credential.
func NewFailures(rdb redis.UniversalClient, prefix string, perMinute int) *Failures {
	return &Failures{
		limiter: redis_rate.NewLimiter(rdb), limit: redis_rate.PerMinute(perMinute),
		prefix: prefix + ":fail:", now: time.Now, over: map[string]overBudget{},
	}
}

// Fail counts one failed request from addr and says whether it is over the
// budget. On an error (Redis unreachable) the caller answers the failure as
// it would have anyway.
func (f *Failures) Fail(ctx context.Context, addr string) (Verdict, error) {
	key := clientKey(addr)
	now := f.now()
	f.mu.Lock()
	known, ok := f.over[key]
	f.mu.Unlock()
	if ok && now.Before(known.until) {
		return Verdict{Over: true, RetryAfter: known.until.Sub(now)}, nil
	}
	res, err := f.limiter.Allow(ctx, f.prefix+key, f.limit)
	if err != nil {
		return Verdict{}, err
	}
	if res.Allowed > 0 {
		return Verdict{}, nil
	}
	first := !ok || now.Sub(known.reported) >= time.Minute
	entry := overBudget{until: now.Add(res.RetryAfter), reported: known.reported}
	if first {
		entry.reported = now
	}
	f.remember(key, now, entry)
	return Verdict{Over: true, RetryAfter: res.RetryAfter, First: first}, nil
}

func (f *Failures) remember(key string, now time.Time, entry overBudget) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.over[key]; !ok && len(f.over) >= maxRemembered {
		for k, o := range f.over {
			if !now.Before(o.until) { // at worst, its next report comes early
				delete(f.over, k)
			}
		}
		if len(f.over) >= maxRemembered {
			return
		}
	}
	f.over[key] = entry
}

// clientKey is the address a budget belongs to: an IPv4 address, or the
// /64 of an IPv6 one (one subscriber usually holds a whole /64, and would
// otherwise get a fresh budget per address). Anything else, which the
// server's address extraction should never give, shares one budget.
func clientKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return "unknown"
	}
	ip = ip.WithZone("").Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// Attempts bounds the attempts one (shop, API key) pair may make at the
// shop's CRM: GCRA like the failure budget, in scripts of our own that also
// keep when the pair's last attempt went and when its last failure ended,
// so a register past the bound knows whether one may still be under way.
type Attempts struct {
	rdb      redis.UniversalClient
	interval time.Duration // between attempts, on average
	burst    time.Duration // perMinute attempts at once
	lasts    time.Duration // how long one attempt may take
	prefix   string
}

// NewAttempts allows perMinute attempts per pair, in a burst of the same
// size; an attempt takes at most lasts (CRM_TIMEOUT and the writes after).
func NewAttempts(rdb redis.UniversalClient, prefix string, perMinute int, lasts time.Duration) *Attempts {
	return &Attempts{
		rdb: rdb, interval: time.Minute / time.Duration(perMinute), burst: time.Minute, lasts: lasts,
		prefix: prefix + ":shop:",
	}
}

// The scripts run on Redis's own clock (TIME: one clock for every replica).
// A pair's hash holds tat (GCRA), last (when an attempt last went) and done
// (the start of the last attempt told ended): the last is under way while
// last > done.
const attemptsClock = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function inflight(k, lasts)
  local last = tonumber(redis.call('HGET', k, 'last') or '0') or 0
  local done = tonumber(redis.call('HGET', k, 'done') or '0') or 0
  return (last > done and now - last < lasts) and 1 or 0
end
`

// attemptAllow: KEYS[1] the pair; ARGV interval, burst, lasts (ms).
// Replies {1, 0, last, started} when the attempt may go (last: it took the
// pair's last slot for now; started: when, on Redis's clock), else
// {0, in flight (1/0), 0, 0}.
var attemptAllow = redis.NewScript(attemptsClock + `
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0') or 0
if tat < now then tat = now end
if tat + interval - now <= burst then
  tat = tat + interval
  redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', tat), 'last', string.format('%.0f', now))
  redis.call('PEXPIRE', KEYS[1], burst + interval)
  return {1, 0, (tat + interval - now > burst) and 1 or 0, now}
end
return {0, inflight(KEYS[1], tonumber(ARGV[3])), 0, 0}
`)

// attemptDone: KEYS[1] the pair; ARGV when the attempt started. Only the
// pair's latest attempt can end it, and done records which one ended (its
// start), not when: a late word from an earlier one (a success told off
// the reply's path) changes nothing, even when it arrives in the same
// millisecond as the next attempt goes.
var attemptDone = redis.NewScript(attemptsClock + `
if redis.call('HGET', KEYS[1], 'last') == ARGV[1] then redis.call('HSET', KEYS[1], 'done', ARGV[1]) end
return 1
`)

var attemptInFlight = redis.NewScript(attemptsClock + `
return inflight(KEYS[1], tonumber(ARGV[1]))
`)

// AttemptVerdict is what Attempts says about one more attempt of a pair.
type AttemptVerdict struct {
	// OK: the attempt may reach the shop's CRM.
	OK bool
	// InFlight (when not OK): the pair's last attempt that went may still
	// be under way; its outcome is the answer.
	InFlight bool
	// Last (when OK): this attempt took the pair's last slot for now, so
	// registers past the bound may come and wait for it: its end must be
	// told (Ended), whatever its outcome. An attempt with slots left after
	// it need not tell a success: nobody waits for it, and the stored key
	// tells anyone who comes later.
	Last bool
	// started is when the attempt went (Redis's clock, ms): Ended names it.
	started int64
}

// Allow counts one attempt of apiKey at systemURL (canonical) and says
// whether it may reach the CRM.
func (a *Attempts) Allow(ctx context.Context, systemURL string, apiKey redact.Secret) (AttemptVerdict, error) {
	res, err := attemptAllow.Run(ctx, a.rdb, []string{a.key(systemURL, apiKey)},
		a.interval.Milliseconds(), a.burst.Milliseconds(), a.lasts.Milliseconds()).Int64Slice()
	if err != nil {
		return AttemptVerdict{}, err
	}
	if len(res) != 4 {
		return AttemptVerdict{}, fmt.Errorf("ratelimit: attempt bound: unexpected reply %v", res)
	}
	return AttemptVerdict{OK: res[0] == 1, InFlight: res[1] == 1, Last: res[2] == 1, started: res[3]}, nil
}

// Ended records that the attempt Allow let through as v ended (whatever
// its outcome), so registers past the bound stop waiting for it; unless a
// later attempt of the pair went since, which it then leaves alone.
func (a *Attempts) Ended(ctx context.Context, systemURL string, apiKey redact.Secret, v AttemptVerdict) error {
	return attemptDone.Run(ctx, a.rdb, []string{a.key(systemURL, apiKey)}, strconv.FormatInt(v.started, 10)).Err()
}

// InFlight reports whether the pair's last attempt may still be under way.
func (a *Attempts) InFlight(ctx context.Context, systemURL string, apiKey redact.Secret) (bool, error) {
	n, err := attemptInFlight.Run(ctx, a.rdb, []string{a.key(systemURL, apiKey)}, a.lasts.Milliseconds()).Int64()
	return n == 1, err
}

func (a *Attempts) key(systemURL string, apiKey redact.Secret) string {
	return a.prefix + PairDigest(systemURL, apiKey)
}

// PairDigest names a (shop, API key) pair in a key name without holding
// the key: SHA-256 over both, length-prefixed so no two pairs share an
// input, with a label of its own so the digest is of no use elsewhere. API
// keys are long random strings the CRM issues, so the digest cannot be
// reversed by guessing.
func PairDigest(systemURL string, apiKey redact.Secret) string {
	h := sha256.New()
	h.Write([]byte("simpleconnect attempts v1\x00"))
	for _, part := range []string{systemURL, apiKey.Reveal()} {
		h.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(part))))
		h.Write([]byte(part))
	}
	return hex.EncodeToString(h.Sum(nil))
}
