package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/modulehub/simpleconnect/seal"
)

// formatField is the meta field naming the store format whose bookkeeping
// (the per-key-id account sets) is complete.
const formatField = "format"

// SealedCounts returns how many accounts each encryption key id sealed
// (fully or in part), from the sets the writes keep: no account is read.
func (s *Redis) SealedCounts(ctx context.Context) (map[string]int64, error) {
	ids, err := s.rdb.SMembers(ctx, s.keys.sealedIDs()).Result()
	if err != nil {
		return nil, err
	}
	cmds := make([]*redis.IntCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.SCard(ctx, s.keys.sealedBy(id))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(ids))
	for i, id := range ids {
		if n := cmds[i].Val(); n > 0 {
			out[id] = n
		}
	}
	return out, nil
}

// CheckSealKeys fails when stored accounts were sealed with a key that the
// keyring lacks: started that way, the service would answer every such
// shop with an error. The one line names ENCRYPTION_KEY and the key ids,
// never a key. The first start on data written before key ids were
// tracked counts every account once.
func (s *Redis) CheckSealKeys(ctx context.Context) error {
	if err := s.adoptFormat1(ctx); err != nil {
		return fmt.Errorf("store: counting sealed accounts per key: %w", err)
	}
	counts, err := s.SealedCounts(ctx)
	if err != nil {
		return fmt.Errorf("store: reading sealed accounts per key: %w", err)
	}
	var missing []string
	var n int64
	for id, c := range counts {
		if !slices.Contains(s.keyIDs(), id) {
			missing = append(missing, id)
			n += c
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	return fmt.Errorf("config: ENCRYPTION_KEY lacks key id(s) %s, which sealed %d stored account(s): list that key again (after the current one) and run POST /admin/api/reseal before dropping it (docs/operations.md)",
		strings.Join(missing, ","), n)
}

// keyIDs are the keyring's ids in hex, the current one first.
func (s *Redis) keyIDs() []string {
	var out []string
	for _, id := range s.ring.IDs() {
		out = append(out, seal.FormatKeyID(id))
	}
	return out
}

// CurrentKeyID is the id of the key that seals new values.
func (s *Redis) CurrentKeyID() string { return s.currentKey }

// adoptFormat1 adds every account to its key ids' sets once, for data
// written before the sets existed (format 1). Idempotent, so replicas
// starting together may both run it.
func (s *Redis) adoptFormat1(ctx context.Context) error {
	done, err := s.rdb.HGet(ctx, s.keys.meta(), formatField).Result()
	if err != nil && !isNil(err) {
		return err
	}
	if done == "2" {
		return nil
	}
	// Pipelined scripts go by digest: load it first (on every node of a
	// Cluster).
	if err := scriptReseal.Load(ctx, s.rdb).Err(); err != nil {
		return err
	}
	err = s.eachAccountID(ctx, func(ids []string) error {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, id := range ids {
				scriptReseal.EvalSha(ctx, p, []string{s.keys.account(id)}, append(s.common(s.now()), 0)...)
			}
			return nil
		})
		return err
	})
	if err != nil {
		return err
	}
	return s.rdb.HSet(ctx, s.keys.meta(), formatField, "2").Err()
}

// eachAccountID calls fn with the ids of every account, a page at a time.
func (s *Redis) eachAccountID(ctx context.Context, fn func([]string) error) error {
	min := "-"
	for {
		ids, err := s.rdb.ZRangeByLex(ctx, s.keys.all(), &redis.ZRangeBy{Min: min, Max: "+", Count: 500}).Result()
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		if err := fn(ids); err != nil {
			return err
		}
		min = "(" + ids[len(ids)-1]
	}
}

// ResealReport is what Reseal did.
type ResealReport struct {
	// Resealed counts accounts (and sessions) rewritten with the current key.
	Resealed int `json:"resealed"`
	// Unreadable counts accounts that could not be opened (left as they
	// are, logged once with their id).
	Unreadable int `json:"unreadable"`
	// ByKey is, afterwards, how many accounts each key id sealed.
	ByKey map[string]int64 `json:"byKey"`
}

// Reseal rewrites every value sealed with an older key with the current
// one: accounts, and the sessions' sealed fields (a session that cannot be
// opened is ended: its owner signs in again). Each account is one
// compare-and-set script, so Reseal runs beside live traffic, may be
// interrupted and run again, and does nothing to what is already current.
func (s *Redis) Reseal(ctx context.Context) (ResealReport, error) {
	rep := ResealReport{}
	err := s.eachAccountID(ctx, func(ids []string) error {
		accounts := make([]*redis.MapStringStringCmd, len(ids))
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range ids {
				accounts[i] = p.HGetAll(ctx, s.keys.account(id))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, c := range accounts {
			h := c.Val()
			if len(h) == 0 {
				continue
			}
			a, err := s.decodeStrict(h)
			if errors.Is(err, ErrUnreadable) {
				rep.Unreadable++
				continue
			}
			if err != nil {
				return err
			}
			args := s.resealArgs(a, "")
			if args[0] == 0 && h[fSealedWith] == strings.Join(sealedWith(h), ",") {
				continue
			}
			res, err := scriptReseal.Run(ctx, s.rdb, []string{s.keys.account(a.ID)}, append(s.common(s.now()), args...)...).Result()
			if err != nil {
				return err
			}
			if verdict, _ := reply(res); verdict == "ok" && args[0] != 0 {
				rep.Resealed++
			}
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	n, err := s.resealSessions(ctx)
	if err != nil {
		return rep, err
	}
	rep.Resealed += n
	if err := s.rdb.HSet(ctx, s.keys.meta(), formatField, "2").Err(); err != nil {
		return rep, err
	}
	rep.ByKey, err = s.SealedCounts(ctx)
	return rep, err
}

// casField writes a field only if it still holds what was read.
var casField = redis.NewScript(`if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) return 1 end return 0`)

// casString rewrites a string only if it still holds what was read,
// keeping its expiry.
var casString = redis.NewScript(`local v = redis.call('GET', KEYS[1])
if v ~= ARGV[1] then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl) else redis.call('SET', KEYS[1], ARGV[2]) end
return 1`)

// scanKeys lists the keys matching pattern, on every master of a Cluster.
func (s *Redis) scanKeys(ctx context.Context, pattern string) ([]string, error) {
	var (
		mu   sync.Mutex
		keys []string
	)
	scan := func(ctx context.Context, c redis.Cmdable) error {
		it := c.Scan(ctx, 0, pattern, 500).Iterator()
		for it.Next(ctx) {
			mu.Lock()
			keys = append(keys, it.Val())
			mu.Unlock()
		}
		return it.Err()
	}
	var err error
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, s.rdb)
	}
	slices.Sort(keys)
	return slices.Compact(keys), err
}

// resealSessions re-seals every sealed field of every session, and every
// session's draft. One that cannot be opened is dropped: the owner signs
// in again, or types the draft again.
func (s *Redis) resealSessions(ctx context.Context) (int, error) {
	keys, err := s.scanKeys(ctx, s.keys.tag+":sess:*")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, key := range keys {
		h, err := s.rdb.HGetAll(ctx, key).Result()
		if err != nil {
			return n, err
		}
		changed := false
		for f, v := range h {
			if len(v) == 0 || v[0] < 0x01 || v[0] > 0x08 { // plain text fields (ids, times) never start with a seal version byte
				continue
			}
			pt, stale, err := s.ring.Open([]byte(v), []byte(key+"#"+f))
			if err != nil {
				s.rdb.Del(ctx, key)
				changed = false
				break
			}
			if !stale {
				continue
			}
			if err := casField.Run(ctx, s.rdb, []string{key}, f, v, string(s.ring.Seal(pt, []byte(key+"#"+f)))).Err(); err != nil {
				return n, err
			}
			changed = true
		}
		if changed {
			n++
		}
	}
	drafts, err := s.scanKeys(ctx, s.keys.tag+":draft:*")
	if err != nil {
		return n, err
	}
	for _, key := range drafts {
		v, err := s.rdb.Get(ctx, key).Result()
		if isNil(err) {
			continue
		}
		if err != nil {
			return n, err
		}
		pt, stale, err := s.ring.Open([]byte(v), []byte(key))
		if err != nil {
			s.rdb.Del(ctx, key)
			continue
		}
		if !stale {
			continue
		}
		if err := casString.Run(ctx, s.rdb, []string{key}, v, string(s.ring.Seal(pt, []byte(key)))).Err(); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
