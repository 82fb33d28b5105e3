package connect

import (
	"context"
	"time"
)

// SweepResult counts what one sweep did.
type SweepResult struct {
	Completed, Aborted, Retrying int
}

// Sweep finishes connections left pending for longer than grace: it sends
// the edit again with the pending key (the same clientId, so the CRM sees
// the same module), completes on success, forgets the attempt on a
// definitive refusal or once it is older than giveUp, and otherwise leaves
// it for the next sweep.
func (s *Service) Sweep(ctx context.Context, now time.Time, grace, giveUp time.Duration) (SweepResult, error) {
	var res SweepResult
	stale, err := s.accounts.InFlight(ctx, now.Add(-grace), 100)
	if err != nil {
		return res, err
	}
	for _, acc := range stale {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		key := acc.PendingAPIKey
		if key.IsZero() {
			continue
		}
		_, err := s.finish(ctx, acc, key)
		switch {
		case err == nil:
			res.Completed++
			s.log.Info("sweeper completed a pending connection", "account_id", acc.ID)
		case Definitive(err):
			res.Aborted++
			s.log.Info("sweeper dropped a pending connection the CRM refused", "account_id", acc.ID, "err", err)
		case now.Sub(acc.PendingSince) > giveUp:
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.writeTimeout)
			aerr := s.accounts.AbortConnect(wctx, acc.ID, key)
			cancel()
			if aerr != nil {
				return res, aerr
			}
			res.Aborted++
			s.log.Warn("sweeper gave up on a pending connection", "account_id", acc.ID, "pending_for", now.Sub(acc.PendingSince).String(), "err", err)
		default:
			res.Retrying++
		}
	}
	return res, nil
}

// RunSweeper sweeps every interval until ctx ends.
func (s *Service) RunSweeper(ctx context.Context, every, grace, giveUp time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			res, err := s.Sweep(ctx, now, grace, giveUp)
			if err != nil && ctx.Err() == nil {
				s.log.Error("sweep failed", "err", err)
			}
			if s.OnSweep != nil {
				s.OnSweep(res)
			}
		}
	}
}
