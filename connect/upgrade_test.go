package connect_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/connect"
	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/seal"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/store/storetest"
)

// v1Fixture is testdata/store/v1-records.json: every key the release
// before attempt ids wrote for seven accounts in each state, a session and
// the event stream, captured from that code (commit ba677fa) with a fixed
// encryption key.
type v1Fixture struct {
	Prefix        string            `json:"prefix"`
	EncryptionKey string            `json:"encryption_key"`
	SessionID     string            `json:"session_id"`
	Accounts      map[string]string `json:"accounts"`
	ClientIDs     map[string]string `json:"client_ids"`
	Keys          map[string]struct {
		Type   string            `json:"type"`
		Hash   map[string]string `json:"hash"` // values base64
		String string            `json:"string"`
		ZSet   []redis.Z         `json:"zset"`
		Stream []redis.XMessage  `json:"stream"`
	} `json:"keys"`
}

// loadV1 writes the fixture into b's Redis. Its key names and sealed values
// are bound to its own prefix, so on a shared Redis the test takes a lock
// first: two test processes never load it at once.
func loadV1(t *testing.T, b *storetest.Backend) (v1Fixture, *storetest.Backend) {
	t.Helper()
	raw, err := os.ReadFile("../testdata/store/v1-records.json")
	require.NoError(t, err)
	var fx v1Fixture
	require.NoError(t, json.Unmarshal(raw, &fx))
	ctx := context.Background()
	fb := *b
	fb.Prefix = fx.Prefix
	lock := "{" + fx.Prefix + "}:test-lock"
	deadline := time.Now().Add(time.Minute)
	for !b.Raw.SetNX(ctx, lock, "1", time.Minute).Val() {
		require.True(t, time.Now().Before(deadline), "another test process holds the fixture's prefix")
		time.Sleep(50 * time.Millisecond) // waiting for another process's test, not timing this one
	}
	t.Cleanup(func() { fb.DeleteKeys(t) }) // the lock too
	for k, v := range fx.Keys {
		switch v.Type {
		case "hash":
			fields := map[string]any{}
			for f, b64 := range v.Hash {
				val, err := base64.StdEncoding.DecodeString(b64)
				require.NoError(t, err)
				fields[f] = string(val)
			}
			require.NoError(t, b.Raw.Del(ctx, k).Err())
			require.NoError(t, b.Raw.HSet(ctx, k, fields).Err())
		case "string":
			require.NoError(t, b.Raw.Set(ctx, k, v.String, 0).Err())
		case "zset":
			require.NoError(t, b.Raw.Del(ctx, k).Err())
			for _, z := range v.ZSet {
				require.NoError(t, b.Raw.ZAdd(ctx, k, z).Err())
			}
		case "stream":
			require.NoError(t, b.Raw.Del(ctx, k).Err())
			for _, m := range v.Stream {
				require.NoError(t, b.Raw.XAdd(ctx, &redis.XAddArgs{Stream: k, ID: m.ID, Values: m.Values}).Err())
			}
		default:
			t.Fatalf("fixture key %s has type %s", k, v.Type)
		}
	}
	return fx, &fb
}

// acceptingCRM accepts every key and edit, and remembers the edits.
type acceptingCRM struct {
	mu    sync.Mutex
	edits []crm.Module
}

func (c *acceptingCRM) EditModule(_ context.Context, _ string, _ redact.Secret, m crm.Module) (crm.Info, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.edits = append(c.edits, m)
	return crm.Info{}, nil
}

func (c *acceptingCRM) FetchCredentials(context.Context, string, redact.Secret) (crm.Credentials, error) {
	return crm.Credentials{Scopes: []string{"integration_read", "integration_write"}}, nil
}

func TestRecordsOfThePreviousReleaseStayReadableAndUpgradeOnTheirNextWrite(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		fx, fb := loadV1(t, b)
		ctx := t.Context()
		key, err := base64.StdEncoding.DecodeString(fx.EncryptionKey)
		require.NoError(t, err)
		open := func(keys ...[]byte) *store.Redis {
			s, err := store.New(fb.Dial(), fx.Prefix, keys...)
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			return s
		}
		s := open(key)
		require.NoError(t, s.CheckSealKeys(ctx), "the first start counts the old records per key")
		kid := seal.FormatKeyID(seal.KeyID(key))
		counts, err := s.SealedCounts(ctx)
		require.NoError(t, err)
		assert.Equal(t, map[string]int64{kid: 7}, counts)

		want := map[string]struct {
			status  store.Status
			key     string
			pending string
		}{
			"pending":     {store.StatusPending, "", "key-pending"},
			"active":      {store.StatusActive, "key-active", ""},
			"rotating":    {store.StatusActive, "key-old", "key-new"},
			"inactive":    {store.StatusInactive, "key-inactive", ""},
			"frozen":      {store.StatusFrozen, "key-frozen", ""},
			"moved":       {store.StatusActive, "key-moved", ""},
			"deactivated": {store.StatusInactive, "key-off", ""},
		}
		for name, w := range want {
			acc, err := s.FindByClientID(ctx, redact.Secret(fx.ClientIDs[name]))
			require.NoError(t, err, name)
			assert.Equal(t, fx.Accounts[name], acc.ID, name)
			assert.Equal(t, w.status, acc.Status(), name)
			assert.Equal(t, w.key, acc.APIKey.Reveal(), name)
			assert.Equal(t, w.pending, acc.PendingAPIKey.Reveal(), name)
			assert.Equal(t, acc.State(), acc.Want, "%s: an old record intends what the CRM has", name)
			byURL, err := s.FindBySystemURL(ctx, acc.SystemURL)
			require.NoError(t, err, name)
			assert.Equal(t, acc.ID, byURL.ID, name)
		}
		assert.Equal(t, "https://new.simla.com", must(s.Get(ctx, fx.Accounts["moved"]))(t).SystemURL)
		assert.Equal(t, map[string]string{"shop_code": "main", "token": "s3cret"}, must(s.Get(ctx, fx.Accounts["active"]))(t).Settings)
		sess, err := s.GetSession(ctx, redact.Secret(fx.SessionID))
		require.NoError(t, err, "a session of the old release still signs in")
		assert.Equal(t, fx.Accounts["active"], sess.AccountID)
		events, err := s.Events(ctx, "", 100)
		require.NoError(t, err)
		assert.Len(t, events, 11)
		assert.Equal(t, store.EventConnected, events[0].Type)

		// Driven through the new code: the sweeper finishes the two attempts
		// the old release left pending, with the clientIds the CRM knows.
		stub := &acceptingCRM{}
		svc := connect.New(stub, s, connect.Module{Code: "demo", Name: "Demo", BaseURL: "https://module.test",
			Scopes: []string{"integration_read", "integration_write"}}, nil)
		capturedAt := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC) // the fixture's clock
		res, err := svc.Sweep(ctx, capturedAt.Add(time.Hour))
		require.NoError(t, err)
		assert.Equal(t, connect.SweepResult{Completed: 2}, res)
		sent := map[string]bool{}
		for _, m := range stub.edits {
			sent[m.ClientID.Reveal()] = true
		}
		assert.Equal(t, map[string]bool{fx.ClientIDs["pending"]: true, fx.ClientIDs["rotating"]: true}, sent)
		assert.Equal(t, "key-pending", must(s.Get(ctx, fx.Accounts["pending"]))(t).APIKey.Reveal())
		assert.Equal(t, "key-new", must(s.Get(ctx, fx.Accounts["rotating"]))(t).APIKey.Reveal())

		frozen, err := svc.Connect(ctx, "https://frozen.retailcrm.ru", "key-frozen-2")
		require.NoError(t, err)
		assert.Equal(t, fx.Accounts["frozen"], frozen.ID)
		assert.Equal(t, "key-frozen-2", frozen.APIKey.Reveal())
		on, err := svc.Activity(ctx, must(s.Get(ctx, fx.Accounts["inactive"]))(t), store.State{Active: true}, "", false)
		require.NoError(t, err)
		assert.Equal(t, store.StatusActive, on.Status())
		off, err := svc.Deactivate(ctx, fx.Accounts["active"], false)
		require.NoError(t, err)
		assert.Equal(t, store.StatusInactive, off.Status())
		assert.Equal(t, "s3cret", off.Settings["token"], "what a write does not touch survives it")
		for _, name := range []string{"pending", "rotating", "frozen", "inactive", "active"} {
			assert.Equal(t, "2", b.Raw.HGet(ctx, "{"+fx.Prefix+"}:acct:"+fx.Accounts[name], "v").Val(), "%s is upgraded by its write", name)
		}

		// The documented rotation: the new key listed second, then first,
		// reseal, then the old one dropped. Every step reads everything.
		newKey := seal.NewRandomKey()
		readsAll := func(t *testing.T, s *store.Redis) {
			t.Helper()
			require.NoError(t, s.CheckSealKeys(ctx))
			for name := range want {
				_, err := s.FindByClientID(ctx, redact.Secret(fx.ClientIDs[name]))
				require.NoError(t, err, name)
			}
			_, err := s.GetSession(ctx, redact.Secret(fx.SessionID))
			require.NoError(t, err)
		}
		readsAll(t, open(key, newKey))
		second := open(newKey, key)
		readsAll(t, second)
		rep, err := second.Reseal(ctx)
		require.NoError(t, err)
		assert.Equal(t, 8, rep.Resealed, "seven accounts and the session")
		assert.Equal(t, map[string]int64{seal.FormatKeyID(seal.KeyID(newKey)): 7}, rep.ByKey)
		readsAll(t, open(newKey))
	})
}

func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		require.NoError(t, err)
		return v
	}
}
