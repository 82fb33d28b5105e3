package connect

import (
	"context"
	"fmt"

	"github.com/modulehub/simpleconnect/store"
)

// Managed is what managing a connected account needs of the store, on top
// of Accounts.
type Managed interface {
	Get(ctx context.Context, id string) (store.Account, error)
	Deactivate(ctx context.Context, id string) (store.Account, error)
	Move(ctx context.Context, id, systemURL string) (store.Account, error)
}

var _ Managed = (*store.Redis)(nil)

// Deactivate switches the module off in the shop's CRM (an edit with
// active:false and the account's key), then marks the account inactive. If
// the CRM refuses, nothing changes: the owner would otherwise see "off"
// here and "on" in the CRM. localOnly skips the CRM, for a shop whose key
// no longer works.
func (s *Service) Deactivate(ctx context.Context, id string, localOnly bool) (store.Account, error) {
	acc, err := s.managed.Get(ctx, id)
	if err != nil {
		return store.Account{}, err
	}
	if !localOnly {
		if acc.APIKey.IsZero() {
			return acc, fmt.Errorf("deactivate %s: %w", id, ErrNotConnected)
		}
		if _, err := s.crm.EditModule(ctx, acc.SystemURL, acc.APIKey, s.module.For(acc, false)); err != nil {
			return acc, err
		}
	}
	return s.managed.Deactivate(context.WithoutCancel(ctx), id)
}

// Resync sends the module edit again with the account's key and current
// state: after a change of the module's name, logo or URLs, or to repair a
// CRM that lost it.
func (s *Service) Resync(ctx context.Context, id string) (store.Account, error) {
	acc, err := s.managed.Get(ctx, id)
	if err != nil {
		return store.Account{}, err
	}
	if acc.APIKey.IsZero() {
		return acc, fmt.Errorf("resync %s: %w", id, ErrNotConnected)
	}
	_, err = s.crm.EditModule(ctx, acc.SystemURL, acc.APIKey, s.module.For(acc, acc.Active))
	return acc, err
}

// Move records that the shop now lives at systemURL (canonical) once its
// key works there: the module edit is sent to the new address first, so a
// clientId alone cannot point the account, and later the shop's key, at
// another CRM.
func (s *Service) Move(ctx context.Context, acc store.Account, systemURL string) (store.Account, error) {
	if acc.SystemURL == systemURL {
		return acc, nil
	}
	if acc.APIKey.IsZero() {
		return acc, fmt.Errorf("move %s: %w", acc.ID, ErrNotConnected)
	}
	moved := acc
	moved.SystemURL = systemURL
	if _, err := s.crm.EditModule(ctx, systemURL, acc.APIKey, s.module.For(moved, acc.Active)); err != nil {
		return acc, err
	}
	return s.managed.Move(context.WithoutCancel(ctx), acc.ID, systemURL)
}
