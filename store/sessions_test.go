package store_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/store"
)

func TestSessions(t *testing.T) {
	forBackends(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.s
		clk := newClock(s)
		a := connect(t, s, shopURL(1), newAPIKey())
		const ttl = 30 * time.Minute

		sess, err := s.CreateSession(ctx, a.ID, ttl)
		require.NoError(t, err)
		assert.Len(t, sess.ID.Reveal(), 43, "session id: 32 random bytes")
		assert.Len(t, sess.CSRF.Reveal(), 43, "CSRF token: 32 random bytes")
		assert.NotEqual(t, sess.ID, sess.CSRF)
		assert.Equal(t, a.ID, sess.AccountID)
		assert.True(t, sess.CreatedAt.Equal(clk.Now()))
		other, err := s.CreateSession(ctx, a.ID, ttl)
		require.NoError(t, err)
		assert.NotEqual(t, sess.ID, other.ID)
		assert.NotEqual(t, sess.CSRF, other.CSRF)

		got, err := s.GetSession(ctx, sess.ID)
		require.NoError(t, err)
		assert.Equal(t, sess.ID, got.ID)
		assert.Equal(t, a.ID, got.AccountID)
		assert.Equal(t, sess.CSRF, got.CSRF)
		assert.True(t, got.CreatedAt.Equal(sess.CreatedAt))

		csrf := got.CSRF.Reveal()
		assert.True(t, got.ValidCSRF(csrf), "the session's token")
		assert.False(t, got.ValidCSRF(""), "no token")
		assert.False(t, got.ValidCSRF(other.CSRF.Reveal()), "another session's token")
		assert.False(t, got.ValidCSRF(csrf[:len(csrf)-1]), "a prefix of the token")
		assert.False(t, got.ValidCSRF(csrf+"x"), "the token and more")
		assert.False(t, store.Session{AccountID: a.ID}.ValidCSRF(""), "an empty token never matches an empty one")

		for name, id := range map[string]redact.Secret{"unknown": store.NewClientID(), "empty": ""} {
			_, err := s.GetSession(ctx, id)
			assert.ErrorIs(t, err, store.ErrNotFound, name)
		}

		keys := keysContaining(t, b.raw, b.prefix, sha256Hex(sess.ID.Reveal()))
		require.Len(t, keys, 1, "the session key is named by sha256(session id)")
		text := rawText(t, b.raw, b.prefix)
		require.Contains(t, text, a.ID, "the dump reads the session")
		for _, secret := range []redact.Secret{sess.ID, sess.CSRF, other.ID, other.CSRF} {
			assert.NotContains(t, text, secret.Reveal(), "no session id or CSRF token in clear")
		}

		left, err := b.raw.TTL(ctx, keys[0]).Result()
		require.NoError(t, err)
		assert.Greater(t, left, time.Duration(0), "the session expires")
		assert.LessOrEqual(t, left, ttl)
		if b.mr != nil {
			b.mr.FastForward(ttl - time.Second)
			_, err = s.GetSession(ctx, sess.ID)
			require.NoError(t, err, "alive just before the TTL")
			b.mr.FastForward(2 * time.Second)
			_, err = s.GetSession(ctx, sess.ID)
			assert.ErrorIs(t, err, store.ErrNotFound, "expired after the TTL")
		}

		require.NoError(t, s.DeleteSession(ctx, other.ID))
		_, err = s.GetSession(ctx, other.ID)
		assert.ErrorIs(t, err, store.ErrNotFound, "deleted")
		assert.Empty(t, keysContaining(t, b.raw, b.prefix, sha256Hex(other.ID.Reveal())), "its key is gone")
		assert.NoError(t, s.DeleteSession(ctx, ""), "deleting no session is fine")
		assert.NoError(t, s.DeleteSession(ctx, other.ID), "deleting twice is fine")
	})
}
