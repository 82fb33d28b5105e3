package connect

import (
	"context"
	"errors"
	"fmt"

	"github.com/modulehub/simpleconnect/store"
)

// Deactivate switches the module off in the shop's CRM (an edit with
// active:false and the account's key), then records the account as
// inactive. If the CRM refuses, nothing changes: the owner would otherwise
// see "off" here and "on" in the CRM. localOnly skips the CRM, for a shop
// whose key no longer works.
func (s *Service) Deactivate(ctx context.Context, id string, localOnly bool) (store.Account, error) {
	acc, err := s.store.Get(ctx, id)
	if err != nil {
		return store.Account{}, err
	}
	acc, lease, unlock, err := s.lockAccount(ctx, acc)
	if err != nil {
		return acc, err
	}
	defer unlock()
	want := acc.Want
	want.Active = false
	if !localOnly {
		if acc.APIKey.IsZero() {
			s.release(ctx, lease)
			return acc, fmt.Errorf("deactivate %s: %w", id, ErrNotConnected)
		}
		if _, err := s.crm.EditModule(ctx, acc.SystemURL, acc.APIKey, s.module.edit(acc, want)); err != nil {
			s.unanswered(ctx, lease, acc, &want, err)
			return acc, err
		}
	}
	return s.settle(ctx, lease, acc, store.Sync{
		Sent: want, FromVersion: acc.WantVersion, NewIntention: true, Edited: !localOnly,
		Changes: []store.Change{{Type: store.EventDeactivated}},
	})
}

// unanswered ends an exchange whose edit failed. A refusal changed nothing
// in the CRM, so nothing is recorded; without a clear answer (a timeout, a
// lost reply) the CRM may have applied it, even after what was recorded
// since, so the sweeper sends the intention (want, when given, becomes it)
// until an edit is accepted.
func (s *Service) unanswered(ctx context.Context, lease store.Lease, acc store.Account, want *store.State, err error) {
	if Definitive(err) {
		s.release(ctx, lease)
		return
	}
	wctx, cancel := s.writeCtx(ctx)
	defer cancel()
	if ierr := s.store.Intend(wctx, lease, acc, want); ierr != nil {
		s.log.Error("recording an unanswered edit failed", "account_id", acc.ID, "err", ierr)
	}
}

// Resync sends the module edit again with the account's key and intention:
// after a change of the module's name, logo or URLs, or to repair a CRM
// that lost it.
func (s *Service) Resync(ctx context.Context, id string) (store.Account, error) {
	acc, err := s.store.Get(ctx, id)
	if err != nil {
		return store.Account{}, err
	}
	acc, lease, unlock, err := s.lockAccount(ctx, acc)
	if err != nil {
		return acc, err
	}
	defer unlock()
	if acc.APIKey.IsZero() {
		s.release(ctx, lease)
		return acc, fmt.Errorf("resync %s: %w", id, ErrNotConnected)
	}
	want := acc.Want
	if _, err := s.crm.EditModule(ctx, acc.SystemURL, acc.APIKey, s.module.edit(acc, want)); err != nil {
		s.unanswered(ctx, lease, acc, nil, err)
		return acc, err
	}
	return s.settle(ctx, lease, acc, store.Sync{Sent: want, FromVersion: acc.WantVersion, Edited: true})
}

// Activity applies the CRM's activity callback in one step: the CRM
// switched the module on or off, or froze it, so that state is both what it
// has and what it should have; nothing is sent for it.
//
// A callback that names another address (newURL, canonical) is a move. It
// is followed only when follow is true (the new host is one of the CRM's
// own clouds) and the account's key works there: the key is proven at the
// new address, the edit goes there with the callback's state, and the
// address, the state and a moved event are recorded together. Otherwise
// nothing is sent to the new host, the state is applied, an
// account.move_refused event is recorded and ErrMoveRefused asks the owner
// to reconnect from the new address.
func (s *Service) Activity(ctx context.Context, acc store.Account, st store.State, newURL string, follow bool) (store.Account, error) {
	activity := store.Change{Type: store.EventActivity}
	if newURL == "" || newURL == acc.SystemURL {
		return s.store.SetActivity(ctx, acc.ID, st, store.Lease{}, activity)
	}
	refused := store.Change{Type: store.EventMoveRefused, PreviousSystemURL: acc.SystemURL}
	if !follow || acc.APIKey.IsZero() {
		if _, err := s.store.SetActivity(ctx, acc.ID, st, store.Lease{}, activity, refused); err != nil {
			return acc, err
		}
		return acc, ErrMoveRefused
	}
	read := acc
	acc, lease, unlock, err := s.lockAccount(ctx, acc)
	if err != nil {
		// The switch happened in the CRM whatever becomes of the move: it
		// is applied (an edit on its way is sent again by its holder), and
		// the error asks the CRM to call again for the move.
		wctx, cancel := s.writeCtx(ctx) // also when ctx itself ended the wait
		defer cancel()
		if _, serr := s.store.SetActivity(wctx, read.ID, st, store.Lease{}, activity); serr != nil {
			return read, serr
		}
		return read, err
	}
	defer unlock()
	wctx, cancel := s.writeCtx(ctx)
	defer cancel()
	// Nothing else goes to the new host before the key is proven there.
	if err := s.checkKey(ctx, newURL, acc.APIKey); err != nil {
		changes := []store.Change{activity}
		if Definitive(err) {
			changes = append(changes, refused)
			err = fmt.Errorf("%w: %w", ErrMoveRefused, err)
		}
		if _, serr := s.store.SetActivity(wctx, acc.ID, st, lease, changes...); serr != nil {
			return acc, serr
		}
		return acc, err
	}
	moved := acc
	moved.SystemURL = newURL
	if _, err := s.crm.EditModule(ctx, newURL, acc.APIKey, s.module.edit(moved, st)); err != nil {
		if _, serr := s.store.SetActivity(wctx, acc.ID, st, lease, activity); serr != nil {
			return acc, serr
		}
		return acc, err
	}
	done, err := s.settle(ctx, lease, acc, store.Sync{
		Sent: st, FromVersion: acc.WantVersion, NewIntention: true, SystemURL: newURL, Activity: true, Edited: true,
		Changes: []store.Change{activity, {Type: store.EventMoved, PreviousSystemURL: acc.SystemURL}},
	})
	if errors.Is(err, store.ErrAddressTaken) {
		if _, serr := s.store.SetActivity(wctx, acc.ID, st, store.Lease{}, activity); serr != nil {
			return acc, serr
		}
		return acc, store.ErrAddressTaken
	}
	if err == nil {
		s.log.InfoContext(ctx, "shop moved to a new address", "account_id", acc.ID, "from", acc.SystemURL, "to", newURL)
	}
	return done, err
}
