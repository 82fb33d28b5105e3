// Package ratelimit holds the service's two limits, both shared by every
// replica through Redis (GCRA, go-redis/redis_rate: one EVALSHA per check,
// keys that expire on their own):
//
//   - Failures: failed requests per client address. Valid requests are
//     never counted and never refused; an address over its budget has its
//     failures refused fast.
//   - Attempts: register (and switch-off) attempts that reach one shop's
//     CRM with one API key, so a replayed register cannot burn the shop's
//     CRM quota.
//
// It decides nothing about what failed: handlers call Failures.Fail only
// for a request that already failed its checks.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
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
// shop's CRM.
type Attempts struct {
	limiter *redis_rate.Limiter
	limit   redis_rate.Limit
	prefix  string
}

// NewAttempts allows perMinute attempts per pair, in a burst of the same
// size.
func NewAttempts(rdb redis.UniversalClient, prefix string, perMinute int) *Attempts {
	return &Attempts{limiter: redis_rate.NewLimiter(rdb), limit: redis_rate.PerMinute(perMinute), prefix: prefix + ":shop:"}
}

// Allow counts one attempt of apiKey at systemURL (canonical) and reports
// whether it may reach the CRM.
func (a *Attempts) Allow(ctx context.Context, systemURL string, apiKey redact.Secret) (bool, error) {
	res, err := a.limiter.Allow(ctx, a.prefix+PairDigest(systemURL, apiKey), a.limit)
	if err != nil {
		return false, err
	}
	return res.Allowed > 0, nil
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
