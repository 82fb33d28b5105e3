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

func TestConnectNewShop(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, raw redis.UniversalClient, prefix string) {
		ctx := t.Context()
		clk := newClock(s)
		url, key := shopURL(1), newAPIKey()

		pending, err := s.BeginConnect(ctx, url, key)
		require.NoError(t, err)
		assert.Equal(t, store.StatusPending, pending.Status())
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
		assert.True(t, pending.ConnectedAt.IsZero())

		other, err := s.BeginConnect(ctx, shopURL(2), newAPIKey())
		require.NoError(t, err)
		assert.NotEqual(t, pending.ID, other.ID, "another shop gets another id")
		assert.NotEqual(t, pending.ClientID, other.ClientID, "another shop gets another clientId")

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
			assert.Equal(t, store.StatusPending, got.Status(), name)
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
		done, err := s.CompleteConnect(ctx, pending.ID, key)
		require.NoError(t, err)
		for name, a := range map[string]store.Account{"returned": done, "stored": must(s.Get(ctx, pending.ID))(t)} {
			assert.Equal(t, store.StatusActive, a.Status(), name)
			assert.Equal(t, pending.ID, a.ID, name)
			assert.Equal(t, pending.ClientID, a.ClientID, name)
			assert.Equal(t, key, a.APIKey, name)
			assert.True(t, a.PendingAPIKey.IsZero(), name)
			assert.True(t, a.PendingSince.IsZero(), name)
			assert.True(t, a.ConnectedAt.Equal(connectedAt), "%s: ConnectedAt %v", name, a.ConnectedAt)
			assert.True(t, a.CreatedAt.Equal(pending.CreatedAt), name)
		}

		evs, err := s.Events(ctx, "", 100)
		require.NoError(t, err)
		require.Len(t, evs, 1)
		ev := evs[0]
		assert.Equal(t, store.EventConnected, ev.Type)
		assert.Equal(t, "account.connected", ev.Type)
		assert.Equal(t, pending.ID, ev.AccountID)
		assert.Equal(t, url, ev.SystemURL)
		assert.Equal(t, store.StatusActive, ev.Status)
		assert.True(t, ev.At.Equal(connectedAt), "event time %v", ev.At)
		assert.False(t, ev.KeyChanged)
		after, err := s.Events(ctx, ev.StreamID, 100)
		require.NoError(t, err)
		assert.Empty(t, after, "nothing after the last event")

		assert.Contains(t, s.EventsStream(), prefix, "the stream lives under the prefix")
		msgs, err := raw.XRange(ctx, s.EventsStream(), "-", "+").Result()
		require.NoError(t, err)
		require.Len(t, msgs, 1)
		assert.Equal(t, ev.StreamID, msgs[0].ID)
		assert.Equal(t, "account.connected", msgs[0].Values["type"])
		assert.Equal(t, pending.ID, msgs[0].Values["account_id"])
		assert.Equal(t, url, msgs[0].Values["system_url"])
		assert.Equal(t, "active", msgs[0].Values["status"])
	})
}

// must unwraps a (value, error) pair inside an expression.
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		require.NoError(t, err)
		return v
	}
}

func TestReconnectSameShop(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, raw redis.UniversalClient, _ string) {
		ctx := t.Context()
		clk := newClock(s)
		url, key1, key2 := shopURL(1), newAPIKey(), newAPIKey()
		first := connect(t, s, url, key1)

		clk.Advance(time.Minute)
		again, err := s.BeginConnect(ctx, url, key2)
		require.NoError(t, err)
		for name, a := range map[string]store.Account{"returned": again, "stored": must(s.Get(ctx, first.ID))(t)} {
			assert.Equal(t, first.ID, a.ID, name)
			assert.Equal(t, first.ClientID, a.ClientID, name)
			assert.Equal(t, key1, a.APIKey, "%s: the accepted key stays until the CRM accepts the new one", name)
			assert.Equal(t, key2, a.PendingAPIKey, name)
			assert.Equal(t, store.StatusActive, a.Status(), name)
		}
		byClient, err := s.FindByClientID(ctx, first.ClientID)
		require.NoError(t, err)
		assert.Equal(t, first.ID, byClient.ID)

		reconnectedAt := clk.Advance(time.Second)
		done, err := s.CompleteConnect(ctx, first.ID, key2)
		require.NoError(t, err)
		for name, a := range map[string]store.Account{"returned": done, "stored": must(s.Get(ctx, first.ID))(t)} {
			assert.Equal(t, key2, a.APIKey, name)
			assert.True(t, a.PendingAPIKey.IsZero(), name)
			assert.Equal(t, first.ClientID, a.ClientID, name)
			assert.Equal(t, store.StatusActive, a.Status(), name)
			assert.True(t, a.ConnectedAt.Equal(reconnectedAt), name)
		}

		evs, err := s.Events(ctx, "", 100)
		require.NoError(t, err)
		require.Len(t, evs, 2)
		assert.Equal(t, store.EventConnected, evs[0].Type)
		assert.Equal(t, "account.reconnected", evs[1].Type)
		assert.True(t, evs[1].KeyChanged)
		assert.Equal(t, first.ID, evs[1].AccountID)
		msgs, err := raw.XRange(ctx, s.EventsStream(), "-", "+").Result()
		require.NoError(t, err)
		require.Len(t, msgs, 2)
		assert.Equal(t, "true", msgs[1].Values["key_changed"])
		assert.NotContains(t, msgs[0].Values, "key_changed")
	})
}

func TestAbortConnect(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, raw redis.UniversalClient, prefix string) {
		ctx := t.Context()
		newClock(s)

		t.Run("a never-connected account is removed with every key of it", func(t *testing.T) {
			neighbour := connect(t, s, shopURL(1), newAPIKey())
			url, key := shopURL(2), newAPIKey()
			a, err := s.BeginConnect(ctx, url, key)
			require.NoError(t, err)
			traces := []string{a.ID, url, sha256Hex(a.ClientID.Reveal())}
			before := rawText(t, raw, prefix)
			for _, tr := range traces {
				require.Contains(t, before, tr, "the pending account is in Redis before the abort")
			}

			require.NoError(t, s.AbortConnect(ctx, a.ID, key))

			after := rawText(t, raw, prefix)
			for _, tr := range traces {
				assert.NotContains(t, after, tr, "no key name or value of the aborted account is left")
			}
			for k, n := range zsetSizes(t, raw, prefix) {
				assert.EqualValues(t, 1, n, "%s holds the neighbour only", k)
			}
			_, err = s.Get(ctx, a.ID)
			assert.ErrorIs(t, err, store.ErrNotFound)
			_, err = s.FindBySystemURL(ctx, url)
			assert.ErrorIs(t, err, store.ErrNotFound)
			_, err = s.FindByClientID(ctx, a.ClientID)
			assert.ErrorIs(t, err, store.ErrNotFound)
			got, err := s.Get(ctx, neighbour.ID)
			require.NoError(t, err, "another account is untouched")
			assert.Equal(t, neighbour.APIKey, got.APIKey)

			again, err := s.BeginConnect(ctx, url, key)
			require.NoError(t, err)
			assert.NotEqual(t, a.ID, again.ID, "the next register starts afresh")
		})

		t.Run("a connected account keeps its key and loses the pending one", func(t *testing.T) {
			key1, key2 := newAPIKey(), newAPIKey()
			a := connect(t, s, shopURL(3), key1)
			_, err := s.BeginConnect(ctx, a.SystemURL, key2)
			require.NoError(t, err)

			require.NoError(t, s.AbortConnect(ctx, a.ID, key2))

			got, err := s.Get(ctx, a.ID)
			require.NoError(t, err)
			assert.Equal(t, key1, got.APIKey)
			assert.True(t, got.PendingAPIKey.IsZero())
			assert.True(t, got.PendingSince.IsZero())
			assert.Equal(t, store.StatusActive, got.Status())
			assert.Equal(t, a.ClientID, got.ClientID)
			inflight, err := s.InFlight(ctx, time.Now().Add(24*time.Hour), 100)
			require.NoError(t, err)
			for _, f := range inflight {
				assert.NotEqual(t, a.ID, f.ID, "no longer in flight")
			}
		})

		t.Run("a key that is not the pending one changes nothing", func(t *testing.T) {
			pendingOnly, err := s.BeginConnect(ctx, shopURL(4), newAPIKey())
			require.NoError(t, err)
			connected := connect(t, s, shopURL(5), newAPIKey())
			_, err = s.BeginConnect(ctx, connected.SystemURL, newAPIKey())
			require.NoError(t, err)
			before := rawText(t, raw, prefix)

			require.NoError(t, s.AbortConnect(ctx, pendingOnly.ID, newAPIKey()))
			require.NoError(t, s.AbortConnect(ctx, connected.ID, newAPIKey()))
			require.NoError(t, s.AbortConnect(ctx, connected.ID, connected.APIKey), "the accepted key is not pending")
			require.NoError(t, s.AbortConnect(ctx, ulid.Make().String(), newAPIKey()), "unknown account")

			assert.Equal(t, before, rawText(t, raw, prefix), "Redis is unchanged")
		})
	})
}

func TestReplayedRegister(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, s *store.Redis, url string, key redact.Secret) (store.Account, store.Account)
	}{
		{"register completed twice", func(t *testing.T, s *store.Redis, url string, key redact.Secret) (store.Account, store.Account) {
			return connect(t, s, url, key), connect(t, s, url, key)
		}},
		{"second register begun before the first completed", func(t *testing.T, s *store.Redis, url string, key redact.Secret) (store.Account, store.Account) {
			ctx := t.Context()
			a1, err := s.BeginConnect(ctx, url, key)
			require.NoError(t, err)
			a2, err := s.BeginConnect(ctx, url, key)
			require.NoError(t, err)
			a1, err = s.CompleteConnect(ctx, a1.ID, key)
			require.NoError(t, err)
			a2, err = s.CompleteConnect(ctx, a2.ID, key)
			require.NoError(t, err)
			return a1, a2
		}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, s *store.Redis, raw redis.UniversalClient, prefix string) {
				newClock(s)
				url, key := shopURL(1), newAPIKey()
				a1, a2 := tt.run(t, s, url, key)

				assert.Equal(t, a1.ID, a2.ID, "one account")
				assert.Equal(t, a1.ClientID, a2.ClientID, "same clientId")
				assert.Equal(t, key, a2.APIKey)
				assert.True(t, a2.PendingAPIKey.IsZero())
				assert.Equal(t, store.StatusActive, a2.Status())
				assert.Equal(t, []string{a1.ID}, listIDs(t, s, ""))
				assert.Equal(t, []string{store.EventConnected, store.EventReconnected}, eventTypes(t, s))
				assert.False(t, lastEvent(t, s).KeyChanged, "the same key again is no change")

				sizes := zsetSizes(t, raw, prefix)
				assert.NotEmpty(t, sizes)
				for k, n := range sizes {
					assert.EqualValues(t, 1, n, "index %s", k)
				}
				types := map[string]int{}
				for _, e := range dumpKeys(t, raw, prefix) {
					types[e.typ]++
				}
				assert.Equal(t, 1, types["hash"], "one account hash")
				assert.Equal(t, 2, types["string"], "one shop index and one clientId index")
				assert.Len(t, keysContaining(t, raw, prefix, sha256Hex(a1.ClientID.Reveal())), 1)
			})
		})
	}
}

func TestSecretsAtRest(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, raw redis.UniversalClient, prefix string) {
		ctx := t.Context()
		newClock(s)
		url, key, next := shopURL(1), newAPIKey(), newAPIKey()
		a := connect(t, s, url, key)
		_, err := s.BeginConnect(ctx, url, next) // a pending key too
		require.NoError(t, err)
		setting := "setting-" + randomHex(12)
		_, err = s.SaveSettings(ctx, a.ID, map[string]string{"token": setting})
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
		id, err := raw.Get(ctx, clientKeys[0]).Result()
		require.NoError(t, err)
		assert.Equal(t, a.ID, id)
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
				_, err := s.BeginConnect(ctx, b.SystemURL, newAPIKey())
				require.NoError(t, err)

				src := accountKey(t, raw, prefix, b.ID)
				if tt.fromOther {
					src = accountKey(t, raw, prefix, a.ID)
				}
				dst := accountKey(t, raw, prefix, b.ID)
				sealed, err := raw.HGet(ctx, src, tt.field).Result()
				require.NoError(t, err)
				require.NotContains(t, sealed, a.APIKey.Reveal())
				require.NoError(t, raw.HSet(ctx, dst, tt.intoField, sealed).Err())

				_, err = s.Get(ctx, b.ID)
				require.Error(t, err, "a moved ciphertext must not open")
				assert.ErrorIs(t, err, seal.ErrOpen)
				assert.NotErrorIs(t, err, store.ErrNotFound)
				_, err = s.FindByClientID(ctx, b.ClientID)
				assert.ErrorIs(t, err, seal.ErrOpen)
				_, err = s.SetActivity(ctx, b.ID, true, false)
				assert.ErrorIs(t, err, seal.ErrOpen, "no update on an account that does not open")

				got, err := s.Get(ctx, a.ID)
				require.NoError(t, err, "the source account still opens")
				assert.Equal(t, a.APIKey, got.APIKey)
			})
		})
	}
}

// keyIDs returns the key id (bytes 1..5) of every sealed field of an
// account hash.
func keyIDs(t *testing.T, raw redis.UniversalClient, hashKey string, fields ...string) map[string]uint32 {
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

func TestKeyRotation(t *testing.T) {
	forBackends(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		keyA, keyB, keyC := b.key, seal.NewRandomKey(), seal.NewRandomKey()
		newClock(b.s)
		apiKey := newAPIKey()
		a := connect(t, b.s, shopURL(1), apiKey)
		settings := map[string]string{"token": "setting-" + randomHex(8)}
		_, err := b.s.SaveSettings(ctx, a.ID, settings)
		require.NoError(t, err)

		hashKey := accountKey(t, b.raw, b.prefix, a.ID)
		sealed := []string{"cid", "key", "set"}
		for f, id := range keyIDs(t, b.raw, hashKey, sealed...) {
			require.Equal(t, seal.KeyID(keyA), id, "%s is sealed with A before the rotation", f)
		}

		check := func(t *testing.T, s *store.Redis) {
			t.Helper()
			got, err := s.Get(ctx, a.ID)
			require.NoError(t, err)
			assert.Equal(t, apiKey, got.APIKey)
			assert.Equal(t, a.ClientID, got.ClientID)
			assert.Equal(t, settings, got.Settings)
			byClient, err := s.FindByClientID(ctx, a.ClientID)
			require.NoError(t, err)
			assert.Equal(t, a.ID, byClient.ID)
		}

		rotated := b.open(t, keyB, keyA)
		newClock(rotated)
		check(t, rotated)

		_, err = rotated.SetActivity(ctx, a.ID, true, false)
		require.NoError(t, err)
		for f, id := range keyIDs(t, b.raw, hashKey, sealed...) {
			assert.Equal(t, seal.KeyID(keyB), id, "%s is resealed with the primary key B on update", f)
		}

		check(t, b.open(t, keyB))

		_, err = b.open(t, keyC).Get(ctx, a.ID)
		assert.ErrorIs(t, err, seal.ErrOpen, "a store without A or B cannot read")
		_, err = b.s.Get(ctx, a.ID)
		assert.ErrorIs(t, err, seal.ErrOpen, "A alone no longer reads: everything was resealed")
	})
}

func TestSetActivity(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, _ redis.UniversalClient, _ string) {
		ctx := t.Context()
		clk := newClock(s)
		a := connect(t, s, shopURL(1), newAPIKey())
		cases := []struct {
			name           string
			active, frozen bool
			want           store.Status
		}{
			{"inactive", false, false, store.StatusInactive},
			{"active", true, false, store.StatusActive},
			{"frozen while active", true, true, store.StatusFrozen},
			{"frozen while inactive", false, true, store.StatusFrozen},
			{"active again", true, false, store.StatusActive},
		}
		for _, tt := range cases {
			t.Run(tt.name, func(t *testing.T) {
				at := clk.Advance(time.Second)
				got, err := s.SetActivity(ctx, a.ID, tt.active, tt.frozen)
				require.NoError(t, err)
				stored, err := s.Get(ctx, a.ID)
				require.NoError(t, err)
				for name, acc := range map[string]store.Account{"returned": got, "stored": stored} {
					assert.Equal(t, tt.want, acc.Status(), name)
					assert.Equal(t, tt.active, acc.Active, name)
					assert.Equal(t, tt.frozen, acc.Frozen, name)
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
				assert.True(t, ev.At.Equal(at))
			})
		}
		_, err := s.SetActivity(ctx, ulid.Make().String(), true, false)
		assert.ErrorIs(t, err, store.ErrNotFound)
	})
}

func TestMove(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, raw redis.UniversalClient, prefix string) {
		ctx := t.Context()
		newClock(s)
		oldURL, newURL := shopURL(1), shopURL(10)
		a := connect(t, s, oldURL, newAPIKey())
		other := connect(t, s, shopURL(2), newAPIKey())

		moved, err := s.Move(ctx, a.ID, newURL)
		require.NoError(t, err)
		assert.Equal(t, newURL, moved.SystemURL)
		stored, err := s.Get(ctx, a.ID)
		require.NoError(t, err)
		assert.Equal(t, newURL, stored.SystemURL)
		assert.Equal(t, a.APIKey, stored.APIKey)
		_, err = s.FindBySystemURL(ctx, oldURL)
		assert.ErrorIs(t, err, store.ErrNotFound, "the old address is gone")
		assert.Empty(t, keysContaining(t, raw, prefix, oldURL), "no key for the old address is left")
		found, err := s.FindBySystemURL(ctx, newURL)
		require.NoError(t, err)
		assert.Equal(t, a.ID, found.ID)
		ev := lastEvent(t, s)
		assert.Equal(t, store.EventMoved, ev.Type)
		assert.Equal(t, newURL, ev.SystemURL)
		assert.Equal(t, oldURL, ev.PreviousSystemURL)

		_, err = s.Move(ctx, a.ID, other.SystemURL)
		assert.ErrorIs(t, err, store.ErrAddressTaken)
		stored, err = s.Get(ctx, a.ID)
		require.NoError(t, err)
		assert.Equal(t, newURL, stored.SystemURL, "a refused move changes nothing")
		owner, err := s.FindBySystemURL(ctx, other.SystemURL)
		require.NoError(t, err)
		assert.Equal(t, other.ID, owner.ID, "the other shop keeps its address")
		found, err = s.FindBySystemURL(ctx, newURL)
		require.NoError(t, err)
		assert.Equal(t, a.ID, found.ID)

		n := len(eventTypes(t, s))
		same, err := s.Move(ctx, a.ID, newURL)
		require.NoError(t, err, "moving to its own address is a no-op")
		assert.Equal(t, newURL, same.SystemURL)
		assert.Len(t, eventTypes(t, s), n, "and no event")

		_, err = s.Move(ctx, ulid.Make().String(), shopURL(11))
		assert.ErrorIs(t, err, store.ErrNotFound)

		// An owner that cannot be read (a retired key, a damaged value)
		// still owns its address: Move must not take it over.
		unreadable := connect(t, s, shopURL(12), newAPIKey())
		require.NoError(t, raw.HSet(ctx, accountKey(t, raw, prefix, unreadable.ID), "key", "not a sealed value").Err())
		_, err = s.Move(ctx, a.ID, unreadable.SystemURL)
		require.Error(t, err, "moving onto an unreadable account's address")
		stored, err = s.Get(ctx, a.ID)
		require.NoError(t, err)
		assert.Equal(t, newURL, stored.SystemURL)
		shopKeys := keysContaining(t, raw, prefix, unreadable.SystemURL)
		require.Len(t, shopKeys, 1)
		assert.Equal(t, unreadable.ID, raw.Get(ctx, shopKeys[0]).Val(), "the address still points to its owner")

		// An address whose account is gone is free.
		gone := connect(t, s, shopURL(13), newAPIKey())
		require.NoError(t, raw.Del(ctx, accountKey(t, raw, prefix, gone.ID)).Err())
		moved, err = s.Move(ctx, a.ID, gone.SystemURL)
		require.NoError(t, err, "a dangling index does not hold an address")
		assert.Equal(t, gone.SystemURL, moved.SystemURL)
		found, err = s.FindBySystemURL(ctx, gone.SystemURL)
		require.NoError(t, err)
		assert.Equal(t, a.ID, found.ID)
	})
}

func TestDeactivate(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, _ redis.UniversalClient, _ string) {
		ctx := t.Context()
		newClock(s)
		a := connect(t, s, shopURL(1), newAPIKey())

		got, err := s.Deactivate(ctx, a.ID)
		require.NoError(t, err)
		assert.Equal(t, store.StatusInactive, got.Status())
		stored, err := s.Get(ctx, a.ID)
		require.NoError(t, err)
		assert.Equal(t, store.StatusInactive, stored.Status())
		assert.Equal(t, a.APIKey, stored.APIKey)
		assert.Empty(t, listIDs(t, s, store.StatusActive))
		assert.Equal(t, []string{a.ID}, listIDs(t, s, store.StatusInactive))
		ev := lastEvent(t, s)
		assert.Equal(t, store.EventDeactivated, ev.Type)
		assert.Equal(t, store.StatusInactive, ev.Status)

		_, err = s.Deactivate(ctx, ulid.Make().String())
		assert.ErrorIs(t, err, store.ErrNotFound)
	})
}

func TestSaveSettings(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, raw redis.UniversalClient, prefix string) {
		ctx := t.Context()
		newClock(s)
		a := connect(t, s, shopURL(1), newAPIKey())
		secret := "setting-secret-" + randomHex(12)
		settings := map[string]string{"token": secret, "warehouse": "main", "unicode": "склад №1"}

		got, err := s.SaveSettings(ctx, a.ID, settings)
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

		_, err = s.SaveSettings(ctx, a.ID, map[string]string{"warehouse": "north"})
		require.NoError(t, err)
		stored, err = s.Get(ctx, a.ID)
		require.NoError(t, err)
		assert.Equal(t, map[string]string{"warehouse": "north"}, stored.Settings, "settings are replaced whole")

		_, err = s.SaveSettings(ctx, a.ID, nil)
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
				var err error
				a, err = s.BeginConnect(ctx, shopURL(n), newAPIKey())
				require.NoError(t, err)
			} else {
				a = connect(t, s, shopURL(n), newAPIKey())
			}
			var err error
			switch st {
			case store.StatusInactive:
				_, err = s.Deactivate(ctx, a.ID)
			case store.StatusFrozen:
				_, err = s.SetActivity(ctx, a.ID, true, true)
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

func TestInFlight(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, _ redis.UniversalClient, _ string) {
		ctx := t.Context()
		clk := newClock(s)
		t0 := clk.Now()

		stale, err := s.BeginConnect(ctx, shopURL(1), newAPIKey())
		require.NoError(t, err)
		reconnecting := connect(t, s, shopURL(2), newAPIKey())
		reKey := newAPIKey()
		_, err = s.BeginConnect(ctx, reconnecting.SystemURL, reKey)
		require.NoError(t, err)
		connect(t, s, shopURL(3), newAPIKey()) // completed: not in flight
		clk.Advance(10 * time.Minute)
		fresh, err := s.BeginConnect(ctx, shopURL(4), newAPIKey())
		require.NoError(t, err)

		ids := func(olderThan time.Time, limit int) []string {
			t.Helper()
			accs, err := s.InFlight(ctx, olderThan, limit)
			require.NoError(t, err)
			var out []string
			for _, a := range accs {
				out = append(out, a.ID)
				assert.False(t, a.PendingAPIKey.IsZero(), "an account in flight has a pending key")
				if a.ID == reconnecting.ID {
					assert.Equal(t, reKey, a.PendingAPIKey)
					assert.Equal(t, reconnecting.APIKey, a.APIKey)
				}
			}
			slices.Sort(out)
			return out
		}
		sorted := func(s ...string) []string { slices.Sort(s); return s }

		assert.Equal(t, sorted(stale.ID, reconnecting.ID), ids(t0.Add(5*time.Minute), 100), "older than 5 minutes")
		assert.Empty(t, ids(t0, 100), "pending since exactly the cut-off is not older")
		assert.Equal(t, sorted(stale.ID, reconnecting.ID), ids(t0.Add(time.Millisecond), 100))
		assert.Len(t, ids(t0.Add(5*time.Minute), 1), 1, "limit")
		assert.Equal(t, sorted(stale.ID, reconnecting.ID, fresh.ID), ids(clk.Now().Add(time.Millisecond), 100))

		_, err = s.CompleteConnect(ctx, stale.ID, stale.PendingAPIKey)
		require.NoError(t, err)
		assert.Equal(t, []string{reconnecting.ID}, ids(t0.Add(5*time.Minute), 100), "completed: no longer in flight")
	})
}

func TestConcurrentBeginConnect(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, raw redis.UniversalClient, prefix string) {
		ctx := t.Context()
		const n = 20
		url := shopURL(1)
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			ids   = make([]string, n)
			cids  = make([]string, n)
			errs  = make([]error, n)
			keys  = make([]redact.Secret, n)
		)
		for i := range n {
			keys[i] = newAPIKey()
			wg.Go(func() {
				<-start
				a, err := s.BeginConnect(ctx, url, keys[i])
				ids[i], cids[i], errs[i] = a.ID, a.ClientID.Reveal(), err
			})
		}
		close(start)
		wg.Wait()

		for i, err := range errs {
			require.NoError(t, err, "goroutine %d", i)
		}
		assert.Len(t, slices.Compact(slices.Sorted(slices.Values(ids))), 1, "one account id among all results: %v", ids)
		assert.Len(t, slices.Compact(slices.Sorted(slices.Values(cids))), 1, "one clientId")

		assert.Equal(t, []string{ids[0]}, listIDs(t, s, ""))
		for k, size := range zsetSizes(t, raw, prefix) {
			assert.EqualValues(t, 1, size, "index %s", k)
		}
		hashes, strs := 0, 0
		for _, e := range dumpKeys(t, raw, prefix) {
			switch e.typ {
			case "hash":
				hashes++
			case "string":
				strs++
			}
		}
		assert.Equal(t, 1, hashes, "one account hash")
		assert.Equal(t, 2, strs, "one shop and one clientId index")
		got, err := s.FindBySystemURL(ctx, url)
		require.NoError(t, err)
		assert.Equal(t, ids[0], got.ID)
		assert.True(t, slices.Contains(keys, got.PendingAPIKey), "the pending key is one of the registers'")
		assert.True(t, strings.HasPrefix(got.PendingAPIKey.Reveal(), "apikey-"))
	})
}
