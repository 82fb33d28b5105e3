package connect

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/modulehub/simpleconnect/store"
)

// SweepOptions bound the sweeper.
type SweepOptions struct {
	// Batch is how many due accounts one sweep takes (default 200).
	Batch int
	// Concurrency is how many shops' CRMs one sweep talks to at once
	// (default 8).
	Concurrency int
	// GiveUp is how long a connection attempt may stay unfinished before it
	// is dropped (default 24h).
	GiveUp time.Duration
	// MaxTries is how many failed tries bringing a CRM to an intention get
	// before it is given up (default 12: with the backoff, about a day).
	MaxTries int
	// Backoff is the wait after the first failed try; it doubles up to
	// MaxBackoff (defaults 1m, 2h).
	Backoff, MaxBackoff time.Duration
}

func (o SweepOptions) withDefaults() SweepOptions {
	if o.Batch <= 0 {
		o.Batch = 200
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.GiveUp <= 0 {
		o.GiveUp = 24 * time.Hour
	}
	if o.MaxTries <= 0 {
		o.MaxTries = 12
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Minute
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 2 * time.Hour
	}
	return o
}

// SetSweepOptions replaces the sweeper's bounds (zero fields: defaults).
func (s *Service) SetSweepOptions(o SweepOptions) { s.sweep = o.withDefaults() }

// SweepResult counts what one sweep did.
type SweepResult struct {
	Completed  int // pending connections the CRM accepted
	Synced     int // intentions the CRM now has
	Aborted    int // pending connections dropped (refused, or too old)
	Abandoned  int // intentions given up
	Retrying   int // left for a later sweep
	Skipped    int // someone else was on it, or nothing was left to do
	Unreadable int // accounts that cannot be read
}

func (r *SweepResult) add(o SweepResult) {
	r.Completed += o.Completed
	r.Synced += o.Synced
	r.Aborted += o.Aborted
	r.Abandoned += o.Abandoned
	r.Retrying += o.Retrying
	r.Skipped += o.Skipped
	r.Unreadable += o.Unreadable
}

// Sweep finishes what registers, switch-offs and callbacks left undone
// (a crash, a lost reply, a CRM outage) and is due at now: a pending
// attempt's edit is sent again with its key and the account's current
// intention (the same clientId, so the CRM sees the same module), an
// intention the CRM lacks is sent with the account's key. Each account is
// worked on under its lease (so replicas never do it twice), a few shops at
// a time; a failed try is retried later with a growing backoff, so one
// shop's dead CRM never holds the others up.
func (s *Service) Sweep(ctx context.Context, now time.Time) (SweepResult, error) {
	var res SweepResult
	ids, err := s.store.Due(ctx, now, s.sweep.Batch)
	if err != nil {
		return res, err
	}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
		sem  = make(chan struct{}, s.sweep.Concurrency)
	)
	for _, id := range ids {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			o, err := s.sweepOne(ctx, id, now)
			mu.Lock()
			defer mu.Unlock()
			res.add(o)
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, errors.Join(errs...)
}

func (s *Service) sweepOne(ctx context.Context, id string, now time.Time) (SweepResult, error) {
	acc, lease, bad, err := s.store.Acquire(ctx, id)
	switch {
	case errors.Is(err, store.ErrLeaseHeld), errors.Is(err, store.ErrNotFound):
		return SweepResult{Skipped: 1}, nil
	case err != nil:
		return SweepResult{}, err
	}
	wctx, cancel := s.writeCtx(ctx)
	defer cancel()
	if len(bad) > 0 {
		return SweepResult{Unreadable: 1}, s.store.Backoff(wctx, lease, now.Add(s.sweep.MaxBackoff), false)
	}
	backoff := func(err error) (SweepResult, error) {
		d := min(s.sweep.Backoff<<min(acc.Tries, 20), s.sweep.MaxBackoff)
		d += rand.N(d/10 + 1)
		return SweepResult{Retrying: 1}, s.store.Backoff(wctx, lease, now.Add(d), !Definitive(err))
	}
	switch {
	case !acc.PendingAPIKey.IsZero():
		seq := acc.PendingSeq
		if now.Sub(acc.PendingSince) > s.sweep.GiveUp {
			if _, err := s.store.Abort(wctx, lease, acc, seq, true); err != nil {
				return SweepResult{}, err
			}
			s.log.Warn("sweeper gave up on a pending connection", "account_id", acc.ID, "pending_for", now.Sub(acc.PendingSince).String())
			return SweepResult{Aborted: 1}, nil
		}
		want := acc.Want
		_, err := s.crm.EditModule(ctx, acc.SystemURL, acc.PendingAPIKey, s.module.edit(acc, want))
		switch {
		case err == nil:
			if _, err := s.settle(ctx, lease, acc, store.Sync{
				Sent: want, FromVersion: acc.WantVersion, Proved: acc.PendingAPIKey, ProvedSeq: seq, Edited: true,
				Changes: []store.Change{connected(acc, acc.PendingAPIKey, seq)},
			}); err != nil {
				return SweepResult{}, err
			}
			s.log.Info("sweeper completed a pending connection", "account_id", acc.ID)
			return SweepResult{Completed: 1}, nil
		case Definitive(err):
			// An earlier try got no clear answer (that is why the attempt is
			// the sweeper's): the CRM may have its intention, so the account
			// keeps it and is brought there with its own key.
			if _, err := s.store.Abort(wctx, lease, acc, seq, true); err != nil {
				return SweepResult{}, err
			}
			s.log.Info("sweeper dropped a pending connection the CRM refused", "account_id", acc.ID, "err", err)
			return SweepResult{Aborted: 1}, nil
		default:
			return backoff(err)
		}
	case !acc.InSync():
		if acc.APIKey.IsZero() || acc.Tries >= s.sweep.MaxTries {
			s.log.Warn("sweeper gave up bringing a CRM to the account's intention: the CRM's state is unknown; a resync or the next register sets it",
				"account_id", acc.ID, "tries", acc.Tries)
			return SweepResult{Abandoned: 1}, s.store.Abandon(wctx, lease)
		}
		want := acc.Want
		_, err := s.crm.EditModule(ctx, acc.SystemURL, acc.APIKey, s.module.edit(acc, want))
		switch {
		case err == nil:
			if _, err := s.settle(ctx, lease, acc, store.Sync{Sent: want, FromVersion: acc.WantVersion, Edited: true}); err != nil {
				return SweepResult{}, err
			}
			return SweepResult{Synced: 1}, nil
		default:
			// Even a refusal is retried (up to MaxTries): an earlier try got
			// no clear answer, so the CRM may have this intention already, and
			// a refusal such as 402 ends when the shop pays.
			return backoff(err)
		}
	default:
		return SweepResult{Skipped: 1}, s.store.Backoff(wctx, lease, now, false) // nothing left: leaves the queue
	}
}

// RunSweeper sweeps every interval until ctx ends; each sweep gets at most
// one interval.
func (s *Service) RunSweeper(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sctx, cancel := context.WithTimeout(ctx, every)
			res, err := s.Sweep(sctx, s.now())
			cancel()
			if err != nil && ctx.Err() == nil {
				s.log.Error("sweep failed", "err", err)
			}
			if s.OnSweep != nil {
				s.OnSweep(res)
			}
		}
	}
}
