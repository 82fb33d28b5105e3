package store

import (
	"context"
	"errors"
	"maps"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modulehub/simpleconnect/redact"
)

// ErrAddressTaken means another account already owns a shop address.
var ErrAddressTaken = errors.New("store: another account already has this shop address")

// Get returns the account with this id.
func (s *Redis) Get(ctx context.Context, id string) (Account, error) {
	return s.load(ctx, s.rdb, id)
}

// FindByClientID returns the account a clientId belongs to.
func (s *Redis) FindByClientID(ctx context.Context, clientID redact.Secret) (Account, error) {
	if clientID.IsZero() {
		return Account{}, ErrNotFound
	}
	return s.findVia(ctx, s.keys.client(clientID.Reveal()))
}

// FindBySystemURL returns the account of a shop (canonical address).
func (s *Redis) FindBySystemURL(ctx context.Context, systemURL string) (Account, error) {
	return s.findVia(ctx, s.keys.shop(systemURL))
}

func (s *Redis) findVia(ctx context.Context, indexKey string) (Account, error) {
	id, err := s.rdb.Get(ctx, indexKey).Result()
	if isNil(err) {
		return Account{}, ErrNotFound
	}
	if err != nil {
		return Account{}, err
	}
	return s.load(ctx, s.rdb, id)
}

func (s *Redis) load(ctx context.Context, c redis.Cmdable, id string) (Account, error) {
	h, err := c.HGetAll(ctx, s.keys.account(id)).Result()
	if err != nil {
		return Account{}, err
	}
	if len(h) == 0 {
		return Account{}, ErrNotFound
	}
	return s.decode(h)
}

// BeginConnect records, before the CRM is called, that a register for
// systemURL is proving apiKey. A new shop gets a pending account with a
// fresh id and clientId; a known shop keeps both and its current key, with
// apiKey set aside as pending. So a crash after the CRM call leaves a
// record that the sweeper or the next register resolves, never an orphan.
func (s *Redis) BeginConnect(ctx context.Context, systemURL string, apiKey redact.Secret) (Account, error) {
	shopKey := s.keys.shop(systemURL)
	var out Account
	err := s.watch(ctx, func(tx *redis.Tx) error {
		var prev *Account
		id, err := tx.Get(ctx, shopKey).Result()
		switch {
		case err == nil:
			if err := tx.Watch(ctx, s.keys.account(id)).Err(); err != nil {
				return err
			}
			cur, err := s.load(ctx, tx, id)
			if err == nil {
				prev = &cur
			} else if !errors.Is(err, ErrNotFound) {
				return err
			}
		case !isNil(err):
			return err
		}
		now := s.now()
		var next Account
		if prev != nil {
			next = clone(*prev)
		} else {
			next = Account{ID: newAccountID(now), ClientID: NewClientID(), SystemURL: systemURL, CreatedAt: now}
		}
		next.PendingAPIKey, next.PendingSince, next.UpdatedAt = apiKey, now, now
		if err := s.commit(ctx, tx, prev, next, nil); err != nil {
			return err
		}
		out = next
		return nil
	}, shopKey)
	return out, err
}

// CompleteConnect records that the CRM accepted the module with apiKey:
// the key becomes the account's key and the account is active.
func (s *Redis) CompleteConnect(ctx context.Context, id string, apiKey redact.Secret) (Account, error) {
	return s.update(ctx, id, func(_ *redis.Tx, a *Account) (*Event, error) {
		ev := &Event{Type: EventConnected}
		if a.Connected {
			ev.Type = EventReconnected
			ev.KeyChanged = a.APIKey != apiKey
		}
		a.APIKey = apiKey
		if a.PendingAPIKey == apiKey {
			a.PendingAPIKey, a.PendingSince = "", time.Time{}
		}
		a.Connected, a.Active, a.ConnectedAt = true, true, s.now()
		return ev, nil
	})
}

// AbortConnect records that the CRM refused apiKey for good. A shop that
// never connected loses its pending account; a connected one keeps its
// current key. When a newer register took the account over (another pending
// key), that register decides.
func (s *Redis) AbortConnect(ctx context.Context, id string, apiKey redact.Secret) error {
	key := s.keys.account(id)
	return s.watch(ctx, func(tx *redis.Tx) error {
		cur, err := s.load(ctx, tx, id)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if cur.PendingAPIKey != apiKey {
			return nil
		}
		if !cur.Connected {
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				s.remove(ctx, p, cur)
				return nil
			})
			return err
		}
		next := clone(cur)
		next.PendingAPIKey, next.PendingSince, next.UpdatedAt = "", time.Time{}, s.now()
		return s.commit(ctx, tx, &cur, next, nil)
	}, key)
}

// SetActivity applies the CRM's activity callback.
func (s *Redis) SetActivity(ctx context.Context, id string, active, frozen bool) (Account, error) {
	return s.update(ctx, id, func(_ *redis.Tx, a *Account) (*Event, error) {
		a.Active, a.Frozen, a.ActivityAt = active, frozen, s.now()
		return &Event{Type: EventActivity}, nil
	})
}

// Move changes the shop address of an account (the shop moved to a new
// domain). It fails with ErrAddressTaken when another account has it.
func (s *Redis) Move(ctx context.Context, id, systemURL string) (Account, error) {
	return s.update(ctx, id, func(tx *redis.Tx, a *Account) (*Event, error) {
		if a.SystemURL == systemURL {
			return nil, nil
		}
		newKey := s.keys.shop(systemURL)
		if err := tx.Watch(ctx, newKey).Err(); err != nil {
			return nil, err
		}
		owner, err := tx.Get(ctx, newKey).Result()
		if err == nil && owner != a.ID {
			_, err := s.load(ctx, tx, owner)
			if err == nil {
				return nil, ErrAddressTaken
			}
			if !errors.Is(err, ErrNotFound) { // an owner we cannot read still owns the address
				return nil, err
			}
		} else if err != nil && !isNil(err) {
			return nil, err
		}
		ev := &Event{Type: EventMoved, PreviousSystemURL: a.SystemURL}
		a.SystemURL = systemURL
		return ev, nil
	})
}

// Deactivate marks an account inactive (the module was switched off from
// our side).
func (s *Redis) Deactivate(ctx context.Context, id string) (Account, error) {
	return s.update(ctx, id, func(_ *redis.Tx, a *Account) (*Event, error) {
		a.Active = false
		return &Event{Type: EventDeactivated}, nil
	})
}

// SaveSettings replaces the account's connection settings.
func (s *Redis) SaveSettings(ctx context.Context, id string, settings map[string]string) (Account, error) {
	return s.update(ctx, id, func(_ *redis.Tx, a *Account) (*Event, error) {
		a.Settings = maps.Clone(settings)
		return &Event{Type: EventSettingsChanged}, nil
	})
}

// update applies change to one account atomically; a nil event records
// nothing in the stream.
func (s *Redis) update(ctx context.Context, id string, change func(*redis.Tx, *Account) (*Event, error)) (Account, error) {
	var out Account
	err := s.watch(ctx, func(tx *redis.Tx) error {
		cur, err := s.load(ctx, tx, id)
		if err != nil {
			return err
		}
		next := clone(cur)
		ev, err := change(tx, &next)
		if err != nil {
			return err
		}
		next.UpdatedAt = s.now()
		if err := s.commit(ctx, tx, &cur, next, ev); err != nil {
			return err
		}
		out = next
		return nil
	}, s.keys.account(id))
	return out, err
}

// commit writes next (and its indexes and event) in one MULTI/EXEC.
func (s *Redis) commit(ctx context.Context, tx *redis.Tx, prev *Account, next Account, ev *Event) error {
	fields, err := s.encode(next)
	if err != nil {
		return err
	}
	_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
		key := s.keys.account(next.ID)
		p.Del(ctx, key) // the hash is rewritten whole: cleared fields go, every secret is resealed with the current key
		p.HSet(ctx, key, fields)
		member := redis.Z{Member: next.ID}
		p.ZAdd(ctx, s.keys.all(), member)
		for _, st := range Statuses {
			if st == next.Status() {
				p.ZAdd(ctx, s.keys.index(st), member)
			} else if prev == nil || prev.Status() == st {
				p.ZRem(ctx, s.keys.index(st), next.ID)
			}
		}
		if next.PendingAPIKey.IsZero() {
			p.ZRem(ctx, s.keys.inflight(), next.ID)
		} else {
			p.ZAdd(ctx, s.keys.inflight(), redis.Z{Score: float64(next.PendingSince.UnixMilli()), Member: next.ID})
		}
		p.Set(ctx, s.keys.shop(next.SystemURL), next.ID, 0)
		if prev != nil && prev.SystemURL != next.SystemURL {
			p.Del(ctx, s.keys.shop(prev.SystemURL))
		}
		p.Set(ctx, s.keys.client(next.ClientID.Reveal()), next.ID, 0)
		if ev != nil {
			ev.AccountID, ev.SystemURL, ev.Status, ev.At = next.ID, next.SystemURL, next.Status(), next.UpdatedAt
			s.appendEvent(ctx, p, *ev)
		}
		return nil
	})
	return err
}

// remove deletes an account and every index entry of it.
func (s *Redis) remove(ctx context.Context, p redis.Pipeliner, a Account) {
	p.Del(ctx, s.keys.account(a.ID), s.keys.client(a.ClientID.Reveal()))
	p.Eval(ctx, delIfEquals, []string{s.keys.shop(a.SystemURL)}, a.ID)
	p.ZRem(ctx, s.keys.all(), a.ID)
	p.ZRem(ctx, s.keys.inflight(), a.ID)
	for _, st := range Statuses {
		p.ZRem(ctx, s.keys.index(st), a.ID)
	}
}

// delIfEquals deletes a key only if it still points at the given id.
const delIfEquals = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`

func clone(a Account) Account {
	a.Settings = maps.Clone(a.Settings)
	return a
}

// ListQuery selects a page of accounts, newest first.
type ListQuery struct {
	Status Status // empty: every status
	Cursor string // the last id of the previous page; empty: first page
	Limit  int
}

// Page is one page of accounts and the cursor of the next (empty when this
// is the last).
type Page struct {
	Accounts   []Account
	NextCursor string
}

// List returns accounts newest first. Ids are ULIDs, so the order is
// creation time and a cursor is an id: pages stay stable when accounts are
// added (they land before the first page) or removed.
func (s *Redis) List(ctx context.Context, q ListQuery) (Page, error) {
	if q.Limit <= 0 {
		q.Limit = 50
	}
	index := s.keys.all()
	if q.Status != "" {
		index = s.keys.index(q.Status)
	}
	max := "+"
	if q.Cursor != "" {
		max = "(" + q.Cursor
	}
	ids, err := s.rdb.ZRevRangeByLex(ctx, index, &redis.ZRangeBy{Max: max, Min: "-", Count: int64(q.Limit) + 1}).Result()
	if err != nil {
		return Page{}, err
	}
	var page Page
	if len(ids) > q.Limit {
		ids = ids[:q.Limit]
		page.NextCursor = ids[len(ids)-1]
	}
	page.Accounts, err = s.loadMany(ctx, ids)
	return page, err
}

func (s *Redis) loadMany(ctx context.Context, ids []string) ([]Account, error) {
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, s.keys.account(id))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Account, 0, len(ids))
	for _, c := range cmds {
		if len(c.Val()) == 0 {
			continue // removed between the index read and now
		}
		a, err := s.decode(c.Val())
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// InFlight returns up to limit accounts whose pending key was set before
// olderThan: registers cut short by a crash or a lost reply.
func (s *Redis) InFlight(ctx context.Context, olderThan time.Time, limit int) ([]Account, error) {
	ids, err := s.rdb.ZRangeByScore(ctx, s.keys.inflight(), &redis.ZRangeBy{
		Min: "-inf", Max: "(" + strconv.FormatInt(olderThan.UnixMilli(), 10), Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, err
	}
	return s.loadMany(ctx, ids)
}
