package connect

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/store"
)

// KeyChecks is what checking keys needs of the store.
type KeyChecks interface {
	ClaimKeyChecks(ctx context.Context, interval time.Duration, most int) ([]string, error)
	ScheduleKeyChecks(ctx context.Context, interval time.Duration) error
	SetKeyHealth(ctx context.Context, id string, keySeq int64, h store.KeyHealth, missing []string) (store.Account, bool, error)
}

var _ KeyChecks = (*store.Redis)(nil)

// Pacer spaces calls to one shop's CRM under its rate limit
// (ratelimit.Pacer, shared with the CRM proxy): Wait returns once it is
// the caller's turn, or an error when the queue is full.
type Pacer interface {
	Wait(ctx context.Context, key string) (time.Duration, error)
}

// SetPacer makes key checks take their turn under each shop's CRM rate
// limit.
func (s *Service) SetPacer(p Pacer) { s.pacer = p }

// Key check outcomes, for metrics.
const (
	KeyCheckHealthy       = "healthy"
	KeyCheckRevoked       = "key_revoked"
	KeyCheckScopesMissing = "scopes_missing"
	KeyCheckFailed        = "failed"  // no clear answer: nothing changes
	KeyCheckSkipped       = "skipped" // not active, or replaced meanwhile
)

// CheckKeys checks the keys whose turn it is (the store paces them so that
// each active account's key is checked once per interval, evenly, across
// replicas) with GET /api/credentials at the shop's CRM: a 401/403 marks
// the account key_revoked, a missing scope scopes_missing; a later
// successful register heals both. A failure without a clear answer changes
// nothing. It returns the outcomes counted.
func (s *Service) CheckKeys(ctx context.Context, checks KeyChecks, interval time.Duration) (map[string]int, error) {
	ids, err := checks.ClaimKeyChecks(ctx, interval, 100)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, 4)
	)
	for _, id := range ids {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return out, ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			o := s.checkKey1(ctx, checks, id)
			mu.Lock()
			out[o]++
			mu.Unlock()
		})
	}
	wg.Wait()
	return out, nil
}

func (s *Service) checkKey1(ctx context.Context, checks KeyChecks, id string) string {
	acc, err := s.store.Get(ctx, id)
	if err != nil || !acc.Connected || acc.APIKey.IsZero() || !acc.Active || acc.Frozen {
		return KeyCheckSkipped // gone, unreadable, or a module the CRM does not run: nothing uses its key
	}
	// The check is one more call to the shop's CRM: it takes its turn under
	// the shop's rate limit like the module's own calls through the proxy.
	if s.pacer != nil {
		if _, err := s.pacer.Wait(ctx, acc.ID); err != nil {
			return KeyCheckFailed // the shop's CRM is busy: checked again next interval
		}
	}
	health, missing := store.KeyHealthy, []string(nil)
	creds, err := s.crm.FetchCredentials(ctx, acc.SystemURL, acc.APIKey)
	switch {
	case errors.Is(err, crm.ErrUnauthorized) || errors.Is(err, crm.ErrForbidden):
		health = store.KeyRevoked
	case err != nil:
		s.log.Debug("key check got no clear answer; nothing changes", "account_id", acc.ID, "err", err)
		return KeyCheckFailed
	case creds.Scopes != nil:
		for _, want := range s.module.Scopes {
			if !slices.Contains(creds.Scopes, want) {
				missing = append(missing, want)
			}
		}
		if len(missing) > 0 {
			health = store.KeyScopesMissing
		}
	}
	wctx, cancel := s.writeCtx(ctx)
	defer cancel()
	_, changed, err := checks.SetKeyHealth(wctx, acc.ID, acc.KeySeq, health, missing)
	if errors.Is(err, store.ErrStale) || errors.Is(err, store.ErrNotFound) {
		return KeyCheckSkipped
	}
	if err != nil {
		s.log.Error("recording a key check failed", "account_id", acc.ID, "err", err)
		return KeyCheckFailed
	}
	if changed {
		s.log.Warn("a shop's API key changed health", "account_id", acc.ID, "health", string(health), "missing_scopes", missing)
	}
	if health == store.KeyHealthy {
		return KeyCheckHealthy
	}
	return string(health)
}

// RunKeyChecks checks keys until ctx ends, every interval for each active
// account; interval 0 turns checks off. Accounts connected before checks
// were on join the queue first, spread over one interval.
func (s *Service) RunKeyChecks(ctx context.Context, checks KeyChecks, interval time.Duration, onRound func(map[string]int)) {
	if interval <= 0 {
		return
	}
	if err := checks.ScheduleKeyChecks(ctx, interval); err != nil && ctx.Err() == nil {
		s.log.Error("queueing accounts for key checks failed; newly connected ones are still checked", "err", err)
	}
	tick := min(max(interval/100, time.Second), time.Minute)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			rctx, cancel := context.WithTimeout(ctx, max(tick, s.store.LeaseTTL())) // a slow CRM may take its full timeout
			res, err := s.CheckKeys(rctx, checks, interval)
			cancel()
			if err != nil && ctx.Err() == nil {
				s.log.Error("key checks failed", "err", err)
			}
			if onRound != nil {
				onRound(res)
			}
		}
	}
}
