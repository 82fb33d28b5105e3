package store_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/seal"
	"github.com/modulehub/simpleconnect/store"
)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func eventTypes(t *testing.T, s *store.Redis) []string {
	t.Helper()
	evs, err := s.Events(t.Context(), "", 1000)
	require.NoError(t, err)
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

func lastEvent(t *testing.T, s *store.Redis) store.Event {
	t.Helper()
	evs, err := s.Events(t.Context(), "", 1000)
	require.NoError(t, err)
	require.NotEmpty(t, evs)
	return evs[len(evs)-1]
}

func listIDs(t *testing.T, s *store.Redis, st store.Status) []string {
	t.Helper()
	page, err := s.List(t.Context(), store.ListQuery{Status: st, Limit: 1000})
	require.NoError(t, err)
	require.Empty(t, page.NextCursor)
	ids := make([]string, len(page.Accounts))
	for i, a := range page.Accounts {
		ids[i] = a.ID
	}
	return ids
}

func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		require.NoError(t, err)
		return v
	}
}

func TestConnectNewShop(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, _ redis.UniversalClient, _ string) {
		ctx := t.Context()
		clk := newClock(s)
		url, key := shopURL(1), newAPIKey()

		at, err := s.BeginConnect(ctx, url, key)
		require.NoError(t, err)
		pending := at.Account
		assert.Equal(t, store.StatusPending, pending.Status())
		assert.EqualValues(t, 1, at.Seq, "the first attempt")
		assert.True(t, at.Lease.Held(), "the attempt got the lease: nobody else talks to this CRM")
		assert.Equal(t, store.State{Active: true}, pending.Want, "a register means: switch the module on")
		assert.False(t, pending.InSync())
		id, err := ulid.ParseStrict(pending.ID)
		require.NoError(t, err, "the account id is a ULID")
		assert.Equal(t, ulid.Timestamp(clk.Now()), id.Time(), "the ULID carries the creation time")
		require.Len(t, pending.ClientID.Reveal(), 43, "clientId is 32 bytes, base64url without padding")
		raw32, err := base64.RawURLEncoding.DecodeString(pending.ClientID.Reveal())
		require.NoError(t, err)
		assert.Len(t, raw32, 32)
		assert.Equal(t, key, pending.PendingAPIKey)
		assert.True(t, pending.APIKey.IsZero(), "no key is the account's before the CRM accepted one")
		assert.Equal(t, url, pending.SystemURL)
		assert.True(t, pending.CreatedAt.Equal(clk.Now()))
		assert.True(t, pending.PendingSince.Equal(clk.Now()))

		other, err := s.BeginConnect(ctx, shopURL(2), newAPIKey())
		require.NoError(t, err)
		assert.NotEqual(t, pending.ID, other.Account.ID, "another shop gets another id")
		assert.NotEqual(t, pending.ClientID, other.Account.ClientID, "another shop gets another clientId")

		finders := map[string]func() (store.Account, error){
			"by id":       func() (store.Account, error) { return s.Get(ctx, pending.ID) },
			"by clientId": func() (store.Account, error) { return s.FindByClientID(ctx, pending.ClientID) },
			"by address":  func() (store.Account, error) { return s.FindBySystemURL(ctx, url) },
		}
		for name, find := range finders {
			got, err := find()
			require.NoError(t, err, name)
			assert.Equal(t, pending.ID, got.ID, name)
			assert.Equal(t, pending.ClientID, got.ClientID, name)
			assert.Equal(t, key, got.PendingAPIKey, name)
		}
		_, err = s.FindByClientID(ctx, store.NewClientID())
		assert.ErrorIs(t, err, store.ErrNotFound, "unknown clientId")
		_, err = s.FindByClientID(ctx, "")
		assert.ErrorIs(t, err, store.ErrNotFound, "empty clientId")
		_, err = s.FindBySystemURL(ctx, shopURL(3))
		assert.ErrorIs(t, err, store.ErrNotFound, "unknown shop")
		_, err = s.Get(ctx, ulid.Make().String())
		assert.ErrorIs(t, err, store.ErrNotFound, "unknown id")
		assert.Empty(t, eventTypes(t, s), "a register under way is not an event yet")

		connectedAt := clk.Advance(time.Second)
		done, err := s.Record(ctx, at.Lease, at.Account, accepted(at, key))
		require.NoError(t, err)
		for name, a := range map[string]store.Account{"returned": done, "stored": must(s.Get(ctx, pending.ID))(t)} {
			assert.Equal(t, store.StatusActive, a.Status(), name)
			assert.Equal(t, pending.ClientID, a.ClientID, name)
			assert.Equal(t, key, a.APIKey, name)
			assert.EqualValues(t, 1, a.KeySeq, name)
			assert.True(t, a.PendingAPIKey.IsZero(), name)
			assert.Zero(t, a.PendingSeq, name)
			assert.True(t, a.InSync(), name)
			assert.True(t, a.ConnectedAt.Equal(connectedAt), name)
			assert.EqualValues(t, 1, a.Edits, name)
		}
		assert.Equal(t, []string{pending.ID}, listIDs(t, s, store.StatusActive))
		assert.Empty(t, listIDs(t, s, store.StatusPending)[:0])
		ev := lastEvent(t, s)
		assert.Equal(t, store.EventConnected, ev.Type)
		assert.Equal(t, store.StatusActive, ev.Status)
		assert.True(t, ev.At.Equal(connectedAt))

		_, _, _, err = s.Acquire(ctx, pending.ID)
		require.NoError(t, err, "the lease was released once the CRM had the intention")
	})
}

func TestANewerAttemptAlwaysWins(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, _ redis.UniversalClient, _ string) {
		ctx := t.Context()
		newClock(s)
		url, keyOld, keyA, keyB := shopURL(1), newAPIKey(), newAPIKey(), newAPIKey()
		first := connect(t, s, url, keyOld)

		a, err := s.BeginConnect(ctx, url, keyA)
		require.NoError(t, err)
		require.True(t, a.Lease.Held())
		b, err := s.BeginConnect(ctx, url, keyB)
		require.NoError(t, err)
		assert.False(t, b.Lease.Held(), "one holder at a time")
		assert.Greater(t, b.Seq, a.Seq)
		assert.Equal(t, first.ID, b.Account.ID, "one account per shop")
		assert.Equal(t, first.ClientID, b.Account.ClientID, "the clientId never changes")
		assert.Equal(t, keyOld, b.Account.APIKey, "the proven key stays until a new one is accepted")
		assert.Equal(t, keyB, b.Account.PendingAPIKey, "the newest attempt is the pending one")

		// The CRM accepts A's key: it is proven, so it replaces the old one,
		// but B is still under way.
		acc, err := s.Record(ctx, a.Lease, a.Account, accepted(a, keyA))
		require.NoError(t, err)
		assert.Equal(t, keyA, acc.APIKey)
		assert.Equal(t, keyB, acc.PendingAPIKey, "A's answer does not end B")

		acc, l := lease(t, s, first.ID)
		bAt := b
		bAt.Account = acc
		acc, err = s.Record(ctx, l, acc, accepted(bAt, keyB))
		require.NoError(t, err)
		assert.Equal(t, keyB, acc.APIKey)
		assert.True(t, acc.PendingAPIKey.IsZero())

		// An older attempt's late answer never replaces a newer key.
		acc, l = lease(t, s, first.ID)
		late := a
		late.Account = acc
		acc, err = s.Record(ctx, l, acc, accepted(late, keyA))
		require.NoError(t, err)
		assert.Equal(t, keyB, acc.APIKey, "A is older than B")
		assert.EqualValues(t, b.Seq, acc.KeySeq)
	})
}

func TestAbortActsOnlyOnItsOwnAttempt(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, raw redis.UniversalClient, prefix string) {
		ctx := t.Context()
		clk := newClock(s)
		url := shopURL(1)

		// A never-connected shop whose attempt the CRM refused leaves nothing.
		at, err := s.BeginConnect(ctx, url, newAPIKey())
		require.NoError(t, err)
		out, err := s.Abort(ctx, at.Lease, at.Account, at.Seq, false)
		require.NoError(t, err)
		assert.Equal(t, store.Deleted, out)
		_, err = s.FindBySystemURL(ctx, url)
		assert.ErrorIs(t, err, store.ErrNotFound)
		_, err = s.FindByClientID(ctx, at.Account.ClientID)
		assert.ErrorIs(t, err, store.ErrNotFound)
		for _, k := range scanKeys(ctx, t, raw, prefix) {
			assert.True(t, strings.HasSuffix(k, ":sealed") || strings.Contains(k, ":sealed:") || strings.HasSuffix(k, ":meta"), "left behind: %s", k)
		}

		// The sweeper's give-up of an old attempt while the owner's fresh
		// register is under way changes nothing: the fresh one decides.
		old, err := s.BeginConnect(ctx, url, newAPIKey())
		require.NoError(t, err)
		require.NoError(t, s.Release(ctx, old.Lease)) // the register died
		clk.Advance(25 * time.Hour)
		key := newAPIKey()
		fresh, err := s.BeginConnect(ctx, url, key)
		require.NoError(t, err)
		require.True(t, fresh.Lease.Held())
		require.NoError(t, s.Release(ctx, fresh.Lease))
		acc, l := lease(t, s, old.Account.ID)
		out, err = s.Abort(ctx, l, acc, old.Seq, true)
		require.NoError(t, err)
		assert.Equal(t, store.Superseded, out)
		acc, l = lease(t, s, old.Account.ID)
		fresh.Account = acc
		done, err := s.Record(ctx, l, acc, accepted(fresh, key))
		require.NoError(t, err, "the fresh register still finds its account")
		assert.Equal(t, old.Account.ID, done.ID)
		assert.Equal(t, old.Account.ClientID, done.ClientID)
		assert.Equal(t, store.StatusActive, done.Status())

		// A connected account whose new key is refused keeps its key, and
		// its intention goes back to what it was (off).
		_, err = s.SetActivity(ctx, done.ID, store.State{}, store.Lease{})
		require.NoError(t, err)
		at, err = s.BeginConnect(ctx, url, newAPIKey())
		require.NoError(t, err)
		assert.True(t, at.Account.Want.Active)
		out, err = s.Abort(ctx, at.Lease, at.Account, at.Seq, false)
		require.NoError(t, err)
		assert.Equal(t, store.Aborted, out)
		got := must(s.Get(ctx, done.ID))(t)
		assert.Equal(t, key, got.APIKey)
		assert.True(t, got.PendingAPIKey.IsZero())
		assert.Equal(t, store.State{}, got.Want, "the refused register's intention is dropped")
		assert.True(t, got.InSync())
		assert.Equal(t, store.StatusInactive, got.Status())
	})
}

func TestLease(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, _ redis.UniversalClient, _ string) {
		ctx := t.Context()
		clk := newClock(s)
		s.SetTimings(10*time.Second, 0)
		a := connect(t, s, shopURL(1), newAPIKey())

		acc, l := lease(t, s, a.ID)
		_, _, _, err := s.Acquire(ctx, a.ID)
		assert.ErrorIs(t, err, store.ErrLeaseHeld)
		require.NoError(t, s.Release(ctx, store.Lease{AccountID: a.ID, Token: "someone-else"}))
		_, _, _, err = s.Acquire(ctx, a.ID)
		assert.ErrorIs(t, err, store.ErrLeaseHeld, "only the holder releases")

		// The holder crashed: its lease frees itself.
		clk.Advance(11 * time.Second)
		acc2, l2 := lease(t, s, a.ID)
		assert.NotEqual(t, l.Token, l2.Token)
		_, err = s.Record(ctx, l, acc, store.Sync{Sent: store.State{}, FromVersion: acc.WantVersion, NewIntention: true, Edited: true})
		assert.ErrorIs(t, err, store.ErrLeaseLost, "a holder whose lease ran out records nothing")
		assert.Equal(t, store.StatusActive, must(s.Get(ctx, a.ID))(t).Status())
		require.NoError(t, s.Release(ctx, l2))
		_ = acc2

		_, _, _, err = s.Acquire(ctx, ulid.Make().String())
		assert.ErrorIs(t, err, store.ErrNotFound)
	})
}

func TestActivityCallbacks(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, _ redis.UniversalClient, _ string) {
		ctx := t.Context()
		clk := newClock(s)
		a := connect(t, s, shopURL(1), newAPIKey())
		cases := []struct {
			name string
			st   store.State
			want store.Status
		}{
			{"inactive", store.State{}, store.StatusInactive},
			{"active", store.State{Active: true}, store.StatusActive},
			{"frozen while active", store.State{Active: true, Frozen: true}, store.StatusFrozen},
			{"frozen while inactive", store.State{Frozen: true}, store.StatusFrozen},
			{"active again", store.State{Active: true}, store.StatusActive},
		}
		for _, tt := range cases {
			t.Run(tt.name, func(t *testing.T) {
				at := clk.Advance(time.Second)
				got, err := s.SetActivity(ctx, a.ID, tt.st, store.Lease{})
				require.NoError(t, err)
				stored := must(s.Get(ctx, a.ID))(t)
				for name, acc := range map[string]store.Account{"returned": got, "stored": stored} {
					assert.Equal(t, tt.want, acc.Status(), name)
					assert.Equal(t, tt.st, acc.State(), name)
					assert.Equal(t, tt.st, acc.Want, name)
					assert.True(t, acc.InSync(), name)
					assert.True(t, acc.ActivityAt.Equal(at), name)
					assert.Equal(t, a.APIKey, acc.APIKey, name)
				}
				for _, st := range store.Statuses {
					if st == tt.want {
						assert.Equal(t, []string{a.ID}, listIDs(t, s, st), "index %s", st)
					} else {
						assert.Empty(t, listIDs(t, s, st), "index %s", st)
					}
				}
				ev := lastEvent(t, s)
				assert.Equal(t, store.EventActivity, ev.Type)
				assert.Equal(t, tt.want, ev.Status)
			})
		}

		// While an edit is on its way, a callback is the new intention; the
		// holder learns it has to send it.
		acc, l := lease(t, s, a.ID)
		require.Equal(t, store.State{Active: true}, acc.Want)
		got, err := s.SetActivity(ctx, a.ID, store.State{}, store.Lease{})
		require.NoError(t, err)
		assert.Equal(t, store.State{}, got.Want)
		assert.Equal(t, store.State{Active: true}, got.State(), "the CRM may yet get the edit on its way")
		assert.False(t, got.InSync())
		next, err := s.Record(ctx, l, acc, store.Sync{Sent: acc.Want, FromVersion: acc.WantVersion, Edited: true})
		require.NoError(t, err)
		assert.False(t, next.InSync(), "the holder must send the callback's state again")
		next, err = s.Record(ctx, l, next, store.Sync{Sent: next.Want, FromVersion: next.WantVersion, Edited: true})
		require.NoError(t, err)
		assert.True(t, next.InSync())
		assert.Equal(t, store.StatusInactive, next.Status())
		_, _, _, err = s.Acquire(ctx, a.ID)
		require.NoError(t, err, "released once in sync")

		_, err = s.SetActivity(ctx, ulid.Make().String(), store.State{Active: true}, store.Lease{})
		assert.ErrorIs(t, err, store.ErrNotFound)
	})
}

func TestMoveIsRecordedUnderTheLease(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, raw redis.UniversalClient, prefix string) {
		ctx := t.Context()
		newClock(s)
		oldURL, newURL := shopURL(1), shopURL(10)
		a := connect(t, s, oldURL, newAPIKey())
		other := connect(t, s, shopURL(2), newAPIKey())

		acc, l := lease(t, s, a.ID)
		moved, err := s.Record(ctx, l, acc, store.Sync{
			Sent: store.State{Active: true}, FromVersion: acc.WantVersion, NewIntention: true, SystemURL: newURL, Activity: true, Edited: true,
			Changes: []store.Change{{Type: store.EventMoved, PreviousSystemURL: oldURL}},
		})
		require.NoError(t, err)
		assert.Equal(t, newURL, moved.SystemURL)
		_, err = s.FindBySystemURL(ctx, oldURL)
		assert.ErrorIs(t, err, store.ErrNotFound, "the old address is gone")
		assert.Empty(t, keysContaining(t, raw, prefix, oldURL), "no key for the old address is left")
		assert.Equal(t, a.ID, must(s.FindBySystemURL(ctx, newURL))(t).ID)
		ev := lastEvent(t, s)
		assert.Equal(t, store.EventMoved, ev.Type)
		assert.Equal(t, newURL, ev.SystemURL)
		assert.Equal(t, oldURL, ev.PreviousSystemURL)

		acc, l = lease(t, s, a.ID)
		_, err = s.Record(ctx, l, acc, store.Sync{Sent: acc.Want, FromVersion: acc.WantVersion, SystemURL: other.SystemURL, Edited: true})
		assert.ErrorIs(t, err, store.ErrAddressTaken)
		require.NoError(t, s.Release(ctx, l))
		assert.Equal(t, newURL, must(s.Get(ctx, a.ID))(t).SystemURL, "a refused move changes nothing")
		assert.Equal(t, other.ID, must(s.FindBySystemURL(ctx, other.SystemURL))(t).ID, "the other shop keeps its address")
	})
}

func TestReplayedRegister(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, raw redis.UniversalClient, prefix string) {
		newClock(s)
		url, key := shopURL(1), newAPIKey()
		a1, a2 := connect(t, s, url, key), connect(t, s, url, key)

		assert.Equal(t, a1.ID, a2.ID, "one account")
		assert.Equal(t, a1.ClientID, a2.ClientID, "same clientId")
		assert.Equal(t, key, a2.APIKey)
		assert.True(t, a2.PendingAPIKey.IsZero())
		assert.Equal(t, store.StatusActive, a2.Status())
		assert.Equal(t, []string{a1.ID}, listIDs(t, s, ""))

		for k, n := range zsetSizes(t, raw, prefix) {
			if strings.HasSuffix(k, ":inflight") {
				assert.EqualValues(t, 0, n, "nothing left to do")
				continue
			}
			assert.EqualValues(t, 1, n, "index %s", k)
		}
		hashes := 0
		for _, e := range dumpKeys(t, raw, prefix) {
			if e.typ == "hash" && strings.Contains(e.key, ":acct:") {
				hashes++
			}
		}
		assert.Equal(t, 1, hashes, "one account hash")
		assert.Len(t, keysContaining(t, raw, prefix, sha256Hex(a1.ClientID.Reveal())), 1)
	})
}

func TestSecretsAtRest(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, raw redis.UniversalClient, prefix string) {
		ctx := t.Context()
		newClock(s)
		url, key, next := shopURL(1), newAPIKey(), newAPIKey()
		a := connect(t, s, url, key)
		_, err := s.BeginConnect(ctx, url, next) // a pending key too, and a lease
		require.NoError(t, err)
		setting := "setting-" + randomHex(12)
		_, err = s.SaveSettings(ctx, must(s.Get(ctx, a.ID))(t), map[string]string{"token": setting})
		require.NoError(t, err)
		sess, err := s.CreateSession(ctx, a.ID, time.Hour)
		require.NoError(t, err)

		text := rawText(t, raw, prefix)
		require.Contains(t, text, a.ID, "the dump reads the store's keys")
		require.Contains(t, text, url, "the dump reads the store's values")
		secrets := map[string]string{
			"API key":         key.Reveal(),
			"pending API key": next.Reveal(),
			"clientId":        a.ClientID.Reveal(),
			"setting value":   setting,
			"session id":      sess.ID.Reveal(),
			"CSRF token":      sess.CSRF.Reveal(),
		}
		for name, secret := range secrets {
			assert.NotContains(t, text, secret, "%s in clear in Redis", name)
		}
		clientKeys := keysContaining(t, raw, prefix, sha256Hex(a.ClientID.Reveal()))
		require.Len(t, clientKeys, 1, "the clientId index is named by sha256(clientId)")
		assert.Equal(t, a.ID, raw.Get(ctx, clientKeys[0]).Val())
	})
}

func TestCiphertextBoundToItsPlace(t *testing.T) {
	cases := []struct {
		name             string
		fromOther        bool // take the value from another account (else from the same one)
		field, intoField string
	}{
		{"API key copied to another account", true, "key", "key"},
		{"clientId copied to another account", true, "cid", "cid"},
		{"pending key moved into the key field", false, "pkey", "key"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, s *store.Redis, raw redis.UniversalClient, prefix string) {
				ctx := t.Context()
				newClock(s)
				a := connect(t, s, shopURL(1), newAPIKey())
				b := connect(t, s, shopURL(2), newAPIKey())
				at, err := s.BeginConnect(ctx, b.SystemURL, newAPIKey())
				require.NoError(t, err)
				require.NoError(t, s.Release(ctx, at.Lease))

				src := accountKey(t, raw, prefix, b.ID)
				if tt.fromOther {
					src = accountKey(t, raw, prefix, a.ID)
				}
				dst := accountKey(t, raw, prefix, b.ID)
				sealed, err := raw.HGet(ctx, src, tt.field).Result()
				require.NoError(t, err)
				require.NoError(t, raw.HSet(ctx, dst, tt.intoField, sealed).Err())

				_, err = s.Get(ctx, b.ID)
				assert.ErrorIs(t, err, store.ErrUnreadable, "a moved ciphertext must not open")
				_, err = s.FindByClientID(ctx, b.ClientID)
				assert.Error(t, err)
				got, err := s.Get(ctx, a.ID)
				require.NoError(t, err, "the source account still opens")
				assert.Equal(t, a.APIKey, got.APIKey)
			})
		})
	}
}

// sealKeyIDs returns the key id (bytes 1..5) of every sealed field of an
// account hash.
func sealKeyIDs(t *testing.T, raw redis.UniversalClient, hashKey string, fields ...string) map[string]uint32 {
	t.Helper()
	out := map[string]uint32{}
	for _, f := range fields {
		v, err := raw.HGet(t.Context(), hashKey, f).Bytes()
		require.NoError(t, err, "field %s", f)
		require.Greater(t, len(v), 5, "field %s", f)
		out[f] = binary.BigEndian.Uint32(v[1:5])
	}
	return out
}

func TestKeyRotationReSealsOnEveryWriteAndCountsPerKey(t *testing.T) {
	forBackends(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		keyA, keyB := b.key, seal.NewRandomKey()
		idA, idB := seal.FormatKeyID(seal.KeyID(keyA)), seal.FormatKeyID(seal.KeyID(keyB))
		newClock(b.s)
		apiKey := newAPIKey()
		a := connect(t, b.s, shopURL(1), apiKey)
		settings := map[string]string{"token": "setting-" + randomHex(8)}
		_, err := b.s.SaveSettings(ctx, must(b.s.Get(ctx, a.ID))(t), settings)
		require.NoError(t, err)
		other := connect(t, b.s, shopURL(2), newAPIKey())
		assert.Equal(t, map[string]int64{idA: 2}, must(b.s.SealedCounts(ctx))(t))
		sess := must(b.s.CreateSession(ctx, a.ID, time.Hour))(t)
		draft := store.Draft{Values: map[string]string{"shop_code": "main"}, Secrets: map[string]redact.Secret{"token": "typed-" + redact.Secret(randomHex(6))}}
		require.NoError(t, b.s.SaveDraft(ctx, sess.ID, draft, time.Minute))
		assert.Equal(t, []string{idA}, must(b.s.Get(ctx, a.ID))(t).SealedWith)

		hashKey := accountKey(t, b.raw, b.prefix, a.ID)
		sealed := []string{"cid", "key", "set"}

		rotated := b.open(t, keyB, keyA)
		newClock(rotated)
		require.NoError(t, rotated.CheckSealKeys(ctx), "both keys listed: starts")
		_, err = rotated.SetActivity(ctx, a.ID, store.State{Active: true}, store.Lease{})
		require.NoError(t, err)
		for f, id := range sealKeyIDs(t, b.raw, hashKey, sealed...) {
			assert.Equal(t, seal.KeyID(keyB), id, "%s is re-sealed with the first key by an activity callback alone", f)
		}
		assert.Equal(t, map[string]int64{idA: 1, idB: 1}, must(rotated.SealedCounts(ctx))(t))
		_, err = rotated.SaveSettings(ctx, must(rotated.Get(ctx, a.ID))(t), settings)
		require.NoError(t, err)
		for f, id := range sealKeyIDs(t, b.raw, hashKey, sealed...) {
			assert.Equal(t, seal.KeyID(keyB), id, "%s is re-sealed with the first key on a write that read it", f)
		}
		assert.Equal(t, map[string]int64{idA: 1, idB: 1}, must(rotated.SealedCounts(ctx))(t))

		onlyB := b.open(t, keyB)
		err = onlyB.CheckSealKeys(ctx)
		require.Error(t, err, "dropping A while an account still uses it")
		assert.Contains(t, err.Error(), "ENCRYPTION_KEY")
		assert.Contains(t, err.Error(), idA)
		assert.NotContains(t, err.Error(), base64.StdEncoding.EncodeToString(keyA))

		rep, err := rotated.Reseal(ctx)
		require.NoError(t, err)
		assert.Equal(t, 3, rep.Resealed, "the account still on A, the session and its draft")
		assert.Zero(t, rep.Unreadable)
		assert.Equal(t, map[string]int64{idB: 2}, rep.ByKey)
		again, err := rotated.Reseal(ctx)
		require.NoError(t, err)
		assert.Zero(t, again.Resealed, "idempotent")

		require.NoError(t, onlyB.CheckSealKeys(ctx), "after the reseal A may go")
		for _, id := range []string{a.ID, other.ID} {
			got, err := onlyB.Get(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, []string{idB}, got.SealedWith)
		}
		assert.Equal(t, settings, must(onlyB.Get(ctx, a.ID))(t).Settings)
		gotSess := must(onlyB.GetSession(ctx, sess.ID))(t)
		assert.Equal(t, sess.CSRF, gotSess.CSRF, "the session survives the rotation")
		gotDraft := must(onlyB.GetDraft(ctx, sess.ID))(t)
		assert.Equal(t, draft.Secrets, gotDraft.Secrets, "and so does its draft")
		_, err = b.s.Get(ctx, a.ID)
		assert.ErrorIs(t, err, store.ErrUnreadable, "A alone no longer reads")
	})
}

func TestUnreadableAccountNeverSpreads(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, raw redis.UniversalClient, prefix string) {
		ctx := t.Context()
		clk := newClock(s)
		good := connect(t, s, shopURL(1), newAPIKey())
		clk.Advance(time.Millisecond)
		bad := connect(t, s, shopURL(2), newAPIKey())
		clk.Advance(time.Millisecond)
		good2 := connect(t, s, shopURL(3), newAPIKey())
		require.NoError(t, raw.HSet(ctx, accountKey(t, raw, prefix, bad.ID), "key", "\x01garbage-not-sealed").Err())

		page, err := s.List(ctx, store.ListQuery{Limit: 10})
		require.NoError(t, err, "one bad account does not break the list")
		require.Len(t, page.Accounts, 3)
		assert.Equal(t, good2.ID, page.Accounts[0].ID)
		assert.Equal(t, bad.ID, page.Accounts[1].ID)
		assert.True(t, page.Accounts[1].Unreadable)
		assert.Equal(t, store.StatusUnreadable, page.Accounts[1].Status())
		assert.Equal(t, good.ID, page.Accounts[2].ID)
		_, err = s.Get(ctx, bad.ID)
		assert.ErrorIs(t, err, store.ErrUnreadable)
		assert.Equal(t, good.APIKey, must(s.FindByClientID(ctx, good.ClientID))(t).APIKey)

		rep, err := s.Reseal(ctx)
		require.NoError(t, err)
		assert.Equal(t, 1, rep.Unreadable)

		// The shop connects again: the account is repaired and keeps its id
		// and its clientId, which could be read (the CRM's callbacks go on
		// working); only the unreadable key is dropped.
		key := newAPIKey()
		at, err := s.BeginConnect(ctx, bad.SystemURL, key)
		require.NoError(t, err)
		assert.Equal(t, []string{"key"}, at.Bad)
		repaired, fresh, err := s.Repair(ctx, at.Lease, at.Bad)
		require.NoError(t, err)
		assert.False(t, fresh)
		assert.Equal(t, bad.ID, repaired.ID)
		assert.Equal(t, bad.ClientID, repaired.ClientID)
		assert.True(t, repaired.APIKey.IsZero())
		at.Account = repaired
		done, err := s.Record(ctx, at.Lease, repaired, accepted(at, key))
		require.NoError(t, err)
		assert.Equal(t, key, done.APIKey)
		assert.Equal(t, bad.ClientID, must(s.FindByClientID(ctx, bad.ClientID))(t).ClientID)
		assert.Contains(t, eventTypes(t, s), store.EventRepaired)

		// An unreadable clientId cannot be sent to the CRM again: it is
		// replaced, and the old one opens nothing.
		clk.Advance(time.Millisecond)
		require.NoError(t, raw.HSet(ctx, accountKey(t, raw, prefix, bad.ID), "cid", "\x01garbage-not-sealed").Err())
		key2 := newAPIKey()
		at, err = s.BeginConnect(ctx, bad.SystemURL, key2)
		require.NoError(t, err)
		assert.Equal(t, []string{"cid"}, at.Bad)
		repaired, fresh, err = s.Repair(ctx, at.Lease, at.Bad)
		require.NoError(t, err)
		assert.True(t, fresh)
		assert.Equal(t, bad.ID, repaired.ID)
		assert.NotEqual(t, bad.ClientID, repaired.ClientID)
		assert.Equal(t, key, repaired.APIKey, "the readable key stays")
		assert.Equal(t, repaired.ClientID, must(s.FindByClientID(ctx, repaired.ClientID))(t).ClientID)
		_, err = s.FindByClientID(ctx, bad.ClientID)
		assert.ErrorIs(t, err, store.ErrNotFound, "the replaced clientId opens nothing")
	})
}

func TestDueOrdersUnfinishedWorkByNextTry(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, _ redis.UniversalClient, _ string) {
		ctx := t.Context()
		clk := newClock(s)
		s.SetTimings(0, time.Minute)
		t0 := clk.Now()
		old, err := s.BeginConnect(ctx, shopURL(1), newAPIKey())
		require.NoError(t, err)
		require.NoError(t, s.Release(ctx, old.Lease))
		connect(t, s, shopURL(2), newAPIKey()) // finished: never due
		clk.Advance(10 * time.Second)
		young, err := s.BeginConnect(ctx, shopURL(3), newAPIKey())
		require.NoError(t, err)
		require.NoError(t, s.Release(ctx, young.Lease))

		due := func(at time.Time) []string {
			t.Helper()
			return must(s.Due(ctx, at, 100))(t)
		}
		assert.Empty(t, due(t0.Add(59*time.Second)), "a register may still be under way")
		assert.Equal(t, []string{old.Account.ID}, due(t0.Add(time.Minute)))
		assert.Equal(t, []string{old.Account.ID, young.Account.ID}, due(t0.Add(2*time.Minute)))

		// A failed try moves the account back: the young one comes first now.
		_, l := lease(t, s, old.Account.ID)
		require.NoError(t, s.Backoff(ctx, l, t0.Add(time.Hour), false))
		assert.Equal(t, []string{young.Account.ID}, due(t0.Add(2*time.Minute)))
		assert.Equal(t, 1, must(s.Get(ctx, old.Account.ID))(t).Tries)
		assert.Equal(t, []string{young.Account.ID, old.Account.ID}, due(t0.Add(time.Hour)))
		assert.Len(t, must(s.Due(ctx, t0.Add(time.Hour), 1))(t), 1, "limit")
	})
}

func TestConcurrentBeginConnectMakesOneAccount(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, raw redis.UniversalClient, prefix string) {
		ctx := t.Context()
		const n = 20
		url := shopURL(1)
		var (
			wg     sync.WaitGroup
			start  = make(chan struct{})
			ids    = make([]string, n)
			cids   = make([]string, n)
			seqs   = make([]int64, n)
			leased = make([]bool, n)
			errs   = make([]error, n)
			keys   = make([]redact.Secret, n)
		)
		for i := range n {
			keys[i] = newAPIKey()
			wg.Go(func() {
				<-start
				at, err := s.BeginConnect(ctx, url, keys[i])
				ids[i], cids[i], seqs[i], leased[i], errs[i] = at.Account.ID, at.Account.ClientID.Reveal(), at.Seq, at.Lease.Held(), err
			})
		}
		close(start)
		wg.Wait()

		for i, err := range errs {
			require.NoError(t, err, "goroutine %d", i)
		}
		assert.Len(t, slices.Compact(slices.Sorted(slices.Values(ids))), 1, "one account id among all results: %v", ids)
		assert.Len(t, slices.Compact(slices.Sorted(slices.Values(cids))), 1, "one clientId")
		assert.Len(t, slices.Compact(slices.Sorted(slices.Values(seqs))), n, "every attempt its own number")
		assert.Equal(t, 1, countTrue(leased), "exactly one attempt holds the lease")
		assert.Equal(t, []string{ids[0]}, listIDs(t, s, ""))
		got := must(s.FindBySystemURL(ctx, url))(t)
		newest := slices.Index(seqs, slices.Max(seqs))
		assert.Equal(t, keys[newest], got.PendingAPIKey, "the pending key is the newest attempt's")
		assert.Len(t, keysContaining(t, raw, prefix, ":client:"), 1, "one clientId index")
	})
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

func TestSaveSettings(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, raw redis.UniversalClient, prefix string) {
		ctx := t.Context()
		newClock(s)
		a := connect(t, s, shopURL(1), newAPIKey())
		secret := "setting-secret-" + randomHex(12)
		settings := map[string]string{"token": secret, "warehouse": "main", "unicode": "склад №1"}

		got, err := s.SaveSettings(ctx, must(s.Get(ctx, a.ID))(t), settings)
		require.NoError(t, err)
		assert.Equal(t, settings, got.Settings)
		stored, err := s.Get(ctx, a.ID)
		require.NoError(t, err)
		assert.Equal(t, settings, stored.Settings, "round trip")
		assert.Equal(t, a.APIKey, stored.APIKey)
		assert.Equal(t, store.EventSettingsChanged, lastEvent(t, s).Type)

		text := rawText(t, raw, prefix)
		require.Contains(t, text, a.ID)
		assert.NotContains(t, text, secret, "settings are sealed")
		assert.NotContains(t, text, "warehouse", "setting names are sealed too")

		settings["token"] = "changed after the save"
		stored, err = s.Get(ctx, a.ID)
		require.NoError(t, err)
		assert.Equal(t, secret, stored.Settings["token"], "the store keeps its own copy")

		_, err = s.SaveSettings(ctx, must(s.Get(ctx, a.ID))(t), map[string]string{"warehouse": "north"})
		require.NoError(t, err)
		stored, err = s.Get(ctx, a.ID)
		require.NoError(t, err)
		assert.Equal(t, map[string]string{"warehouse": "north"}, stored.Settings, "settings are replaced whole")

		_, err = s.SaveSettings(ctx, must(s.Get(ctx, a.ID))(t), nil)
		require.NoError(t, err)
		stored, err = s.Get(ctx, a.ID)
		require.NoError(t, err)
		assert.Empty(t, stored.Settings)
	})
}

func TestListByStatus(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, _ redis.UniversalClient, _ string) {
		ctx := t.Context()
		// The clock stands still: every account is made in the same millisecond.
		newClock(s)
		want := map[store.Status][]string{} // oldest first
		var all []string
		n := 0
		add := func(st store.Status) {
			n++
			var a store.Account
			if st == store.StatusPending {
				at, err := s.BeginConnect(ctx, shopURL(n), newAPIKey())
				require.NoError(t, err)
				a = at.Account
			} else {
				a = connect(t, s, shopURL(n), newAPIKey())
			}
			var err error
			switch st {
			case store.StatusInactive:
				_, err = s.SetActivity(ctx, a.ID, store.State{}, store.Lease{})
			case store.StatusFrozen:
				_, err = s.SetActivity(ctx, a.ID, store.State{Active: true, Frozen: true}, store.Lease{})
			case store.StatusKeyRevoked, store.StatusScopesMissing:
				_, _, err = s.SetKeyHealth(ctx, a.ID, a.KeySeq, store.KeyHealth(st), []string{"order_write"})
			}
			require.NoError(t, err)
			want[st] = append(want[st], a.ID)
			all = append(all, a.ID)
		}
		for range 3 {
			for _, st := range store.Statuses {
				add(st)
			}
		}

		for _, st := range store.Statuses {
			page, err := s.List(ctx, store.ListQuery{Status: st, Limit: 100})
			require.NoError(t, err)
			exp := slices.Clone(want[st])
			slices.Reverse(exp)
			var ids []string
			for _, a := range page.Accounts {
				ids = append(ids, a.ID)
				assert.Equal(t, st, a.Status(), "listed under %s", st)
			}
			assert.Equal(t, exp, ids, "status %s, newest first", st)
		}
		slices.Reverse(all)
		assert.Equal(t, all, listIDs(t, s, ""), "no filter: every account")

		page, err := s.List(ctx, store.ListQuery{Status: store.StatusFrozen, Limit: 2})
		require.NoError(t, err)
		require.Len(t, page.Accounts, 2)
		require.NotEmpty(t, page.NextCursor)
		page, err = s.List(ctx, store.ListQuery{Status: store.StatusFrozen, Limit: 2, Cursor: page.NextCursor})
		require.NoError(t, err)
		require.Len(t, page.Accounts, 1)
		assert.Equal(t, want[store.StatusFrozen][0], page.Accounts[0].ID, "filtered pages go on from the cursor")
		assert.Empty(t, page.NextCursor)
	})
}

func TestListPagination(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 1,000 accounts per backend")
	}
	eachBackend(t, func(t *testing.T, s *store.Redis, _ redis.UniversalClient, _ string) {
		ctx := t.Context()
		newClock(s) // standing still: the order must come from the ids, not from the time
		const total = 1000
		var created []string // oldest first: every account so far
		n := 0
		create := func() string {
			n++
			id := connect(t, s, shopURL(n), newAPIKey()).ID
			created = append(created, id)
			return id
		}
		for range total {
			create()
		}

		cases := []struct {
			limit        int
			addAfterPage int // create accounts after this page; 0: never
		}{
			{limit: 40},                   // divides 1,000: the last page is full and has no cursor
			{limit: 37, addAfterPage: 3},  // 27 full pages and one of 1
			{limit: 37, addAfterPage: 26}, // near the end
		}
		for _, tt := range cases {
			want := slices.Clone(created) // what exists when paging starts
			slices.Reverse(want)
			var (
				seen, added []string
				cursor      string
				pages       int
			)
			for {
				page, err := s.List(ctx, store.ListQuery{Cursor: cursor, Limit: tt.limit})
				require.NoError(t, err)
				pages++
				require.LessOrEqual(t, pages, len(want)/tt.limit+2, "paging does not end")
				for _, a := range page.Accounts {
					seen = append(seen, a.ID)
				}
				if page.NextCursor == "" {
					break
				}
				assert.Len(t, page.Accounts, tt.limit, "limit %d: a page before the last is full", tt.limit)
				assert.Equal(t, page.Accounts[len(page.Accounts)-1].ID, page.NextCursor)
				cursor = page.NextCursor
				if pages == tt.addAfterPage {
					for range 5 {
						added = append(added, create())
					}
				}
			}
			assert.Equal(t, (len(want)+tt.limit-1)/tt.limit, pages, "limit %d: pages", tt.limit)
			require.Equal(t, want, seen, "limit %d: every account once, newest first", tt.limit)
			for i := 1; i < len(seen); i++ {
				require.Greater(t, seen[i-1], seen[i], "limit %d: strictly descending", tt.limit)
			}
			if tt.addAfterPage > 0 {
				require.Len(t, added, 5)
			}
			for _, id := range added {
				assert.NotContains(t, seen, id, "limit %d: accounts added while paging land before the first page", tt.limit)
			}
		}

		first, err := s.List(ctx, store.ListQuery{Limit: 5})
		require.NoError(t, err)
		require.Len(t, first.Accounts, 5)
		for i := 1; i < len(first.Accounts); i++ {
			assert.Greater(t, first.Accounts[i-1].ID, first.Accounts[i].ID)
		}
		newest := slices.Clone(created[len(created)-5:])
		slices.Reverse(newest)
		for i, a := range first.Accounts {
			assert.Equal(t, newest[i], a.ID, "the accounts added last come first in a new listing")
		}

		def, err := s.List(ctx, store.ListQuery{})
		require.NoError(t, err)
		assert.Len(t, def.Accounts, 50, "the default page size")
	})
}

// GetAlong reads the account as Get does, and runs the caller's commands
// in the same pipeline whether the account exists or not.
func TestGetAlongReadsTheAccountWithTheCallersCommands(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, _ redis.UniversalClient, prefix string) {
		ctx := t.Context()
		at, err := s.BeginConnect(ctx, shopURL(1), newAPIKey())
		require.NoError(t, err)
		want, err := s.Get(ctx, at.Account.ID)
		require.NoError(t, err)

		// The caller's key is of another hash slot than the account's, as
		// the proxy's turn is: on a Cluster the pipeline is split by node.
		other := "along:" + prefix
		var n *redis.IntCmd
		got, err := s.GetAlong(ctx, at.Account.ID, func(p redis.Pipeliner) { n = p.Incr(ctx, other) })
		require.NoError(t, err)
		assert.Equal(t, want, got)
		assert.EqualValues(t, 1, n.Val(), "the caller's command ran with the read")

		_, err = s.GetAlong(ctx, "01ARZ3NDEKTSV4RRFFQ69G5FAV", func(p redis.Pipeliner) { n = p.Incr(ctx, other) })
		assert.ErrorIs(t, err, store.ErrNotFound)
		assert.EqualValues(t, 2, n.Val(), "and ran for an unknown account too")

		_, err = s.GetAlong(ctx, at.Account.ID, func(p redis.Pipeliner) { p.Do(ctx, "NOSUCHCOMMAND") })
		assert.NoError(t, err, "another command's error is not the read's")
	})
}
