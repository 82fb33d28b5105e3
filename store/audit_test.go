package store_test

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/store"
)

// A credentials read is on the event stream (on a Cluster too: the stream
// carries the store's hash tag), naming the reader, never the key.
func TestACredentialsReadIsAnEventWithoutTheKey(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *store.Redis, raw redis.UniversalClient, _ string) {
		ctx := t.Context()
		newClock(s)
		key := newAPIKey()
		at, err := s.BeginConnect(ctx, shopURL(1), key)
		require.NoError(t, err)
		require.NoError(t, s.NoteCredentialsRead(ctx, at.Account, "0123456789ab"))

		ev := lastEvent(t, s)
		assert.Equal(t, store.EventCredentialsRead, ev.Type)
		assert.Equal(t, at.Account.ID, ev.AccountID)
		assert.Equal(t, shopURL(1), ev.SystemURL)
		assert.Equal(t, store.StatusPending, ev.Status)
		assert.Equal(t, "0123456789ab", ev.Reader)
		assert.False(t, ev.At.IsZero())

		entries, err := raw.XRange(ctx, s.EventsStream(), "-", "+").Result()
		require.NoError(t, err)
		for _, e := range entries {
			for _, v := range e.Values {
				assert.NotContains(t, v, key.Reveal(), "no event holds the key")
			}
		}
	})
}
