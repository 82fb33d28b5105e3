package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modulehub/simpleconnect/redact"
)

// ErrAddressTaken means another account already owns a shop address.
var ErrAddressTaken = errors.New("store: another account already has this shop address")

// Lease is the right to talk to one shop's CRM: while it is held, nobody
// else sends that shop an edit, so the order the CRM sees edits in is the
// order they are recorded in.
type Lease struct {
	AccountID string
	Token     string
}

// Held reports whether l is a lease at all.
func (l Lease) Held() bool { return l.Token != "" }

// Attempt is a connection attempt just recorded by BeginConnect.
type Attempt struct {
	Account Account
	// Seq numbers the attempt within its account; a newer one always wins.
	Seq int64
	// Lease is held when the attempt got the account's lease at once.
	Lease Lease
	// Bad lists the account's fields that could not be opened (a register
	// repairs them with Repair).
	Bad []string
}

// Change is an event to append with a write.
type Change struct {
	Type              string
	KeyChanged        bool
	PreviousSystemURL string
}

// Get returns the account with this id.
func (s *Redis) Get(ctx context.Context, id string) (Account, error) {
	h, err := s.rdb.HGetAll(ctx, s.keys.account(id)).Result()
	if err != nil {
		return Account{}, err
	}
	if len(h) == 0 {
		return Account{}, ErrNotFound
	}
	return s.decodeStrict(h)
}

// GetAlong is Get with other commands in the same round trip: queue adds
// them to the pipeline that reads the account (the proxy's turn under the
// shop's rate limit). They run whether the account exists or not; their
// outcomes are the caller's to read.
func (s *Redis) GetAlong(ctx context.Context, id string, queue func(redis.Pipeliner)) (Account, error) {
	pipe := s.rdb.Pipeline()
	cmd := pipe.HGetAll(ctx, s.keys.account(id))
	queue(pipe)
	_, _ = pipe.Exec(ctx) // each command's error is its own: the account's is read below
	h, err := cmd.Result()
	if err != nil {
		return Account{}, err
	}
	if len(h) == 0 {
		return Account{}, ErrNotFound
	}
	return s.decodeStrict(h)
}

// FindByClientID returns the account a clientId belongs to. The account's
// own clientId must match too: an index entry left by a clientId that was
// replaced (an account repaired after it became unreadable) opens nothing.
func (s *Redis) FindByClientID(ctx context.Context, clientID redact.Secret) (Account, error) {
	if clientID.IsZero() {
		return Account{}, ErrNotFound
	}
	idx := s.keys.client(clientID.Reveal())
	a, err := s.findVia(ctx, idx)
	if err != nil {
		return a, err
	}
	if !a.ClientID.Equal(clientID) {
		s.rdb.Eval(ctx, delIfEquals, []string{idx}, a.ID) // best effort: a stale entry
		return Account{}, ErrNotFound
	}
	return a, nil
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
	return s.Get(ctx, id)
}

// delIfEquals deletes a key only if it still points at the given id.
const delIfEquals = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`

// common is ARGV[1..5] of every script.
func (s *Redis) common(now time.Time) []any {
	return []any{
		s.keys.tag, strconv.FormatInt(now.UnixMilli(), 10), now.UTC().Format(time.RFC3339Nano), s.maxEvents,
		strconv.FormatInt(now.Add(s.retryAfter).UnixMilli(), 10),
	}
}

// leaseArgs are a new lease's token, end and backstop TTL.
func (s *Redis) leaseArgs(now time.Time, token string) []any {
	return []any{token, strconv.FormatInt(now.Add(s.leaseTTL).UnixMilli(), 10), (2 * s.leaseTTL).Milliseconds()}
}

func changeArgs(changes []Change) []any {
	out := []any{len(changes)}
	for _, c := range changes {
		out = append(out, c.Type, boolField(c.KeyChanged), c.PreviousSystemURL)
	}
	return out
}

func newToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// reply splits a script's reply into its verdict and the rest.
func reply(v any) (string, []any) {
	list, _ := v.([]any)
	if len(list) == 0 {
		return "", nil
	}
	verdict, _ := list[0].(string)
	return verdict, list[1:]
}

// BeginConnect records, before the CRM's edit is sent, that a register for
// systemURL is proving apiKey, as a new attempt of the shop's account: a
// new shop gets a pending account with a fresh id and clientId; a known
// shop keeps both and its current key, the new key set aside as pending.
// The account's intention becomes "switched on". When nobody else is
// talking to the shop's CRM, the attempt also gets the account's lease.
//
// One round trip when this replica knows the shop's account (or the shop
// is new): the key is sealed for the account it will live in.
func (s *Redis) BeginConnect(ctx context.Context, systemURL string, apiKey redact.Secret) (Attempt, error) {
	shopKey := s.keys.shop(systemURL)
	hint := s.shops.get(systemURL)
	for range 4 {
		now := s.now()
		candID := newAccountID(now)
		candKey := s.keys.account(candID)
		cid := NewClientID()
		var hintKey string
		if hint != "" {
			hintKey = s.sealField(s.keys.account(hint), fPendingKey, apiKey.Reveal())
		}
		token := newToken()
		args := append(s.common(now),
			candID, s.sealField(candKey, fClientID, cid.Reveal()), s.keys.client(cid.Reveal()),
			s.sealField(candKey, fPendingKey, apiKey.Reveal()), hint, hintKey, systemURL)
		args = append(args, s.leaseArgs(now, token)...)
		res, err := scriptBegin.Run(ctx, s.rdb, []string{shopKey}, args...).Result()
		if err != nil {
			return Attempt{}, err
		}
		verdict, rest := reply(res)
		if verdict == "retry" {
			hint, _ = rest[0].(string)
			continue
		}
		if verdict != "ok" || len(rest) < 4 {
			return Attempt{}, fmt.Errorf("store: begin connect: unexpected reply %q", verdict)
		}
		id, _ := rest[0].(string)
		seq, _ := rest[1].(int64)
		leased, _ := rest[2].(int64)
		s.shops.put(systemURL, id)
		acc, bad := s.decode(hashOf(rest[3]))
		at := Attempt{Account: acc, Seq: seq, Bad: bad}
		if leased == 1 {
			at.Lease = Lease{AccountID: id, Token: token}
		}
		return at, nil
	}
	return Attempt{}, errors.New("store: begin connect: the shop's account kept changing")
}

// Acquire takes an account's lease when it is free, and returns the
// account as it is now; ErrLeaseHeld when someone else holds it. An
// account that cannot be read is returned with the names of its bad fields.
func (s *Redis) Acquire(ctx context.Context, id string) (Account, Lease, []string, error) {
	now := s.now()
	token := newToken()
	res, err := scriptAcquire.Run(ctx, s.rdb, []string{s.keys.account(id)}, append(s.common(now), s.leaseArgs(now, token)...)...).Result()
	if err != nil {
		return Account{}, Lease{}, nil, err
	}
	verdict, rest := reply(res)
	if verdict != "ok" {
		return Account{}, Lease{}, nil, refusal("acquire", verdict)
	}
	acc, bad := s.decode(hashOf(rest[0]))
	return acc, Lease{AccountID: id, Token: token}, bad, nil
}

// Release gives a lease back (a no-op when it was lost meanwhile).
func (s *Redis) Release(ctx context.Context, l Lease) error {
	if !l.Held() {
		return nil
	}
	return scriptRelease.Run(ctx, s.rdb, []string{s.keys.lease(l.AccountID)}, append(s.common(s.now()), l.Token)...).Err()
}

// Sync is what one exchange with a shop's CRM established, to record
// under the lease.
type Sync struct {
	// Sent is the state the edit carried (or, without an edit, the state
	// the CRM is known to have).
	Sent State
	// FromVersion is the intention version Sent was taken from.
	FromVersion int64
	// NewIntention: Sent is a new intention of its own (switch-off, an
	// activity callback), recorded unless the intention changed meanwhile.
	NewIntention bool
	// SystemURL is where the edit went; a new address is a move.
	SystemURL string
	// Proved is a key the CRM accepted for attempt ProvedSeq (empty: the
	// exchange used the account's own key).
	Proved    redact.Secret
	ProvedSeq int64
	// Activity: the exchange answers an activity callback.
	Activity bool
	// Edited: an edit was sent and accepted (not a local-only change).
	Edited bool
	// Keep holds on to the lease even when the CRM is in sync.
	Keep    bool
	Changes []Change
}

// Record writes what the CRM accepted, under l: its state, the key it
// proved (which replaces the account's only if its attempt is newer than
// the current key's), the end of that attempt if it is still the newest,
// a move. It re-seals the account's fields with the current key. The
// lease is released once the CRM has the account's latest intention (or
// kept with Keep); otherwise it is extended and the returned account says
// what to send next. ErrLeaseLost when l ran out and someone else took
// the account; ErrAddressTaken when a move's address has another account.
func (s *Redis) Record(ctx context.Context, l Lease, read Account, sy Sync) (Account, error) {
	now := s.now()
	key := s.keys.account(l.AccountID)
	provedSeq := ""
	proved := ""
	if !sy.Proved.IsZero() {
		proved = s.sealField(key, fAPIKey, sy.Proved.Reveal())
		provedSeq = strconv.FormatInt(sy.ProvedSeq, 10)
	}
	url := sy.SystemURL
	if url == "" {
		url = read.SystemURL
	}
	args := append(s.common(now), l.Token, boolField(sy.Sent.Active), boolField(sy.Sent.Frozen), sy.FromVersion, url,
		proved, provedSeq, boolField(sy.NewIntention), boolField(sy.Activity), boolField(sy.Edited), boolField(!sy.Keep))
	args = append(args, s.leaseArgs(now, "")[1:]...)
	nextCheck := ""
	if s.keyCheckEvery > 0 {
		nextCheck = strconv.FormatInt(now.Add(s.keyCheckEvery).UnixMilli(), 10)
	}
	args = append(args, nextCheck)
	args = append(args, changeArgs(sy.Changes)...)
	args = append(args, s.resealArgs(read, fAPIKey)...)
	res, err := scriptRecord.Run(ctx, s.rdb, []string{key}, args...).Result()
	if err != nil {
		return Account{}, err
	}
	verdict, rest := reply(res)
	if verdict != "ok" {
		return Account{}, refusal("record", verdict)
	}
	if url != read.SystemURL {
		s.shops.put(url, l.AccountID)
	}
	return s.decodeStrict(hashOf(rest[1]))
}

// AbortOutcome says what Abort did.
type AbortOutcome string

// Abort outcomes.
const (
	Deleted    AbortOutcome = "deleted"    // the account was never connected: it is gone
	Aborted    AbortOutcome = "aborted"    // the attempt ended; the account keeps its key
	Superseded AbortOutcome = "superseded" // a newer attempt began: it decides
)

// Abort ends attempt seq, under l, if it is still the account's newest: an
// account the CRM never accepted is deleted; a connected one keeps its key
// and its intention goes back to what it was before the attempt (unless it
// changed since, or keepIntention: an earlier try of the attempt got no
// clear answer, so the CRM may have it, and the sweeper must make sure).
// The lease is released.
func (s *Redis) Abort(ctx context.Context, l Lease, read Account, seq int64, keepIntention bool) (AbortOutcome, error) {
	clientKey := ""
	if !read.ClientID.IsZero() {
		clientKey = s.keys.client(read.ClientID.Reveal())
	}
	args := append(s.common(s.now()), seq, l.Token, clientKey, boolField(keepIntention))
	res, err := scriptAbort.Run(ctx, s.rdb, []string{s.keys.account(l.AccountID)}, args...).Result()
	if err != nil {
		return "", err
	}
	verdict, rest := reply(res)
	if len(rest) > 0 {
		s.resealLeft(ctx, hashOf(rest[0]))
	}
	switch verdict {
	case "deleted":
		s.shops.drop(read.SystemURL)
		return Deleted, nil
	case "aborted":
		return Aborted, nil
	case "superseded":
		return Superseded, nil
	case "gone":
		return Deleted, nil
	default:
		return "", refusal("abort", verdict)
	}
}

// Abandon gives up an intention the CRM does not take (the sweeper, after
// its last try): the intention becomes what the CRM has. The lease is
// released.
func (s *Redis) Abandon(ctx context.Context, l Lease) error {
	res, err := scriptAbandon.Run(ctx, s.rdb, []string{s.keys.account(l.AccountID)}, append(s.common(s.now()), l.Token)...).Result()
	if err != nil {
		return err
	}
	return s.okResealed(ctx, "abandon", res)
}

// Intend records, under l, that an edit got no clear answer (the CRM may or
// may not have applied it, even after what was recorded since): the
// sweeper sends the account's intention until an edit is accepted. A
// non-nil st becomes the intention, unless the intention changed since
// read. The lease is released.
func (s *Redis) Intend(ctx context.Context, l Lease, read Account, st *State) error {
	act, frz := "", ""
	if st != nil {
		act, frz = boolField(st.Active), boolField(st.Frozen)
	}
	args := append(s.common(s.now()), l.Token, act, frz, read.WantVersion)
	res, err := scriptIntend.Run(ctx, s.rdb, []string{s.keys.account(l.AccountID)}, args...).Result()
	if err != nil {
		return err
	}
	return s.okResealed(ctx, "intend", res)
}

// Backoff leaves unfinished work for the sweeper to try again at next,
// counts the failed try and releases the lease. unsure: the try's edit got
// no clear answer.
func (s *Redis) Backoff(ctx context.Context, l Lease, next time.Time, unsure bool) error {
	args := append(s.common(s.now()), l.Token, strconv.FormatInt(next.UnixMilli(), 10), boolField(unsure))
	res, err := scriptBackoff.Run(ctx, s.rdb, []string{s.keys.account(l.AccountID)}, args...).Result()
	if err != nil {
		return err
	}
	return s.okResealed(ctx, "backoff", res)
}

// okResealed is okOr for a script that replies {"ok", hash}, re-sealing
// what the write left sealed with an older key.
func (s *Redis) okResealed(ctx context.Context, op string, res any) error {
	if err := okOr(op, res); err != nil {
		return err
	}
	if _, rest := reply(res); len(rest) > 0 {
		s.resealLeft(ctx, hashOf(rest[0]))
	}
	return nil
}

// resealLeft re-seals with the current key what a write left sealed with
// an older one, so every write re-seals the record it touched (Record and
// SaveSettings do it in their own script). Outside a key rotation nothing
// is stale, which the values' headers tell without decrypting, and nothing
// is sent. Best effort: the write itself stands, and POST
// /admin/api/reseal finds whatever this misses.
func (s *Redis) resealLeft(ctx context.Context, h map[string]string) {
	id := h[fID]
	if id == "" {
		return
	}
	args := s.resealArgs(Account{ID: id, raw: h}, "")
	if n, _ := args[0].(int); n == 0 {
		return
	}
	_ = scriptReseal.Run(ctx, s.rdb, []string{s.keys.account(id)}, append(s.common(s.now()), args...)...).Err()
}

// okOr is nil for a script's "ok", else its refusal.
func okOr(op string, res any) error {
	if verdict, _ := reply(res); verdict != "ok" {
		return refusal(op, verdict)
	}
	return nil
}

// refusal is the store's error for a script's verdict other than "ok".
func refusal(op, verdict string) error {
	switch verdict {
	case "gone":
		return ErrNotFound
	case "held":
		return ErrLeaseHeld
	case "lost":
		return ErrLeaseLost
	case "taken":
		return ErrAddressTaken
	case "stale":
		return ErrStale
	default:
		return fmt.Errorf("store: %s: unexpected reply %q", op, verdict)
	}
}

// SetActivity applies the CRM's activity callback: the module was switched
// on or off, frozen or unfrozen in the CRM. It is the account's intention
// and, unless an edit is on its way, what the CRM has. l, when held, is
// the caller's lease (released). changes are appended as events.
func (s *Redis) SetActivity(ctx context.Context, id string, st State, l Lease, changes ...Change) (Account, error) {
	if len(changes) == 0 {
		changes = []Change{{Type: EventActivity}}
	}
	args := append(s.common(s.now()), boolField(st.Active), boolField(st.Frozen), l.Token)
	args = append(args, changeArgs(changes)...)
	res, err := scriptActivity.Run(ctx, s.rdb, []string{s.keys.account(id)}, args...).Result()
	if err != nil {
		return Account{}, err
	}
	verdict, rest := reply(res)
	if verdict != "ok" {
		return Account{}, refusal("activity", verdict)
	}
	h := hashOf(rest[0])
	s.resealLeft(ctx, h)
	return s.decodeStrict(h)
}

// SaveSettings replaces the account's connection settings. read is the
// account as the caller read it: its other sealed fields are re-sealed
// with the current key if they did not change since.
func (s *Redis) SaveSettings(ctx context.Context, read Account, settings map[string]string) (Account, error) {
	sealed, err := s.sealSettings(read.ID, settings)
	if err != nil {
		return Account{}, err
	}
	args := append(s.common(s.now()), sealed)
	args = append(args, changeArgs([]Change{{Type: EventSettingsChanged}})...)
	args = append(args, s.resealArgs(read, fSettings)...)
	res, err := scriptSettings.Run(ctx, s.rdb, []string{s.keys.account(read.ID)}, args...).Result()
	if err != nil {
		return Account{}, err
	}
	verdict, rest := reply(res)
	if verdict != "ok" {
		return Account{}, refusal("settings", verdict)
	}
	return s.decodeStrict(hashOf(rest[0]))
}

// Repair mends an account a register reached whose record had fields that
// could not be opened, under l: unreadable key and settings are dropped,
// and an unreadable clientId is replaced by a new one (it cannot be sent to
// the CRM again); a readable clientId is kept, so the CRM's callbacks keep
// working. The account keeps its id, address and history; the register
// then proves its key as for any account. newClientID says whether it got
// a new clientId.
func (s *Redis) Repair(ctx context.Context, l Lease, bad []string) (acc Account, newClientID bool, err error) {
	key := s.keys.account(l.AccountID)
	raw, err := s.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return Account{}, false, err
	}
	args := append(s.common(s.now()), l.Token)
	if slices.Contains(bad, fClientID) {
		cid := NewClientID()
		args = append(args, s.sealField(key, fClientID, cid.Reveal()), s.keys.client(cid.Reveal()))
		newClientID = true
	} else {
		args = append(args, "", "")
	}
	var drop []any
	for _, f := range bad {
		if f == fAPIKey || f == fSettings || f == fPendingKey {
			drop = append(drop, f, raw[f])
		}
	}
	args = append(args, len(drop)/2)
	args = append(args, drop...)
	args = append(args, changeArgs([]Change{{Type: EventRepaired}})...)
	res, err := scriptRepair.Run(ctx, s.rdb, []string{key}, args...).Result()
	if err != nil {
		return Account{}, false, err
	}
	verdict, rest := reply(res)
	if verdict != "ok" {
		return Account{}, false, refusal("repair", verdict)
	}
	s.forgetUnreadable(l.AccountID)
	h := hashOf(rest[0])
	s.resealLeft(ctx, h)
	acc, err = s.decodeStrict(h)
	return acc, newClientID, err
}

// resealArgs re-seals the sealed fields of read with the current key, as
// compare-and-set triples, skipping the field the caller writes itself.
// Only values sealed with an older key are rewritten.
func (s *Redis) resealArgs(read Account, skip string) []any {
	if read.ID == "" || read.Unreadable || len(read.raw) == 0 {
		return []any{0}
	}
	key := s.keys.account(read.ID)
	var triples []any
	for _, f := range sealedFields {
		old, ok := read.raw[f]
		if f == skip || !ok {
			continue
		}
		if id, _ := sealKeyID(old); id == s.currentKey {
			continue // current already: no need to decrypt it to know (every write asks)
		}
		pt, stale, err := s.ring.Open([]byte(old), []byte(key+"#"+f))
		if err != nil || !stale {
			continue
		}
		triples = append(triples, f, old, string(s.ring.Seal(pt, []byte(key+"#"+f))))
	}
	return append([]any{len(triples) / 3}, triples...)
}

// ListQuery selects a page of accounts, newest first.
type ListQuery struct {
	Status Status // empty: every status
	Cursor string // the last id of the previous page; empty: first page
	Limit  int
}

// Page is one page of accounts and the cursor of the next (empty when this
// is the last). An account that cannot be read is in the page with only its
// id and Unreadable set.
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

// loadMany reads accounts in one round trip. One that cannot be read is
// returned as Account{ID, Unreadable: true}: it never hides the others.
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
	for i, c := range cmds {
		if len(c.Val()) == 0 {
			continue // removed between the index read and now
		}
		a, err := s.decodeStrict(c.Val())
		if errors.Is(err, ErrUnreadable) {
			out = append(out, Account{ID: ids[i], Unreadable: true})
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// Due returns up to limit ids of accounts with unfinished work (a pending
// attempt, an intention the CRM lacks) whose next try is due at now,
// longest waiting first. Each failed try moves an account back by its
// backoff, so one shop's dead CRM never holds the others up.
func (s *Redis) Due(ctx context.Context, now time.Time, limit int) ([]string, error) {
	return s.rdb.ZRangeByScore(ctx, s.keys.inflight(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: int64(limit),
	}).Result()
}

// SetKeyHealth records what a check of the account's key (the one proved
// by attempt keySeq) found. A key replaced meanwhile is not judged by a
// check of the old one: ErrStale. changed: the health is new (an event was
// appended).
func (s *Redis) SetKeyHealth(ctx context.Context, id string, keySeq int64, h KeyHealth, missing []string) (Account, bool, error) {
	args := append(s.common(s.now()), strconv.FormatInt(keySeq, 10), string(h), strings.Join(missing, ","))
	res, err := scriptKeyHealth.Run(ctx, s.rdb, []string{s.keys.account(id)}, args...).Result()
	if err != nil {
		return Account{}, false, err
	}
	verdict, rest := reply(res)
	if verdict != "ok" {
		return Account{}, false, refusal("key health", verdict)
	}
	changed, _ := rest[0].(int64)
	raw := hashOf(rest[1])
	s.resealLeft(ctx, raw)
	acc, err := s.decodeStrict(raw)
	return acc, changed == 1, err
}

// ErrStale means what the caller learnt is about a key the account no
// longer has.
var ErrStale = errors.New("store: the account's key changed meanwhile")

// ClaimKeyChecks hands this replica the key checks due at now, at most
// most: paced so every queued account is checked once per interval,
// evenly over it, across all replicas together; each to one replica only
// (it is rescheduled a whole interval later as it is handed out).
func (s *Redis) ClaimKeyChecks(ctx context.Context, interval time.Duration, most int) ([]string, error) {
	args := append(s.common(s.now()), interval.Milliseconds(), most)
	res, err := scriptClaimKeyChecks.Run(ctx, s.rdb, []string{s.keys.keyCheck()}, args...).StringSlice()
	if isNil(err) {
		return nil, nil
	}
	return res, err
}

// ScheduleKeyChecks puts every connected account that is not yet in the
// key-check queue there, its first check spread over one interval from
// now: for data written before checks were on.
func (s *Redis) ScheduleKeyChecks(ctx context.Context, interval time.Duration) error {
	now := s.now()
	return s.eachAccountID(ctx, func(ids []string) error {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, id := range ids {
				at := now.Add(time.Duration(mrand.Int64N(int64(interval) + 1)))
				p.ZAddNX(ctx, s.keys.keyCheck(), redis.Z{Score: float64(at.UnixMilli()), Member: id})
			}
			return nil
		})
		return err
	})
}
