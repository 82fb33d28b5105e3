package store_test

import (
	"strings"
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

func TestDrafts(t *testing.T) {
	forBackends(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		s := b.s
		a := connect(t, s, shopURL(1), newAPIKey())
		sess, err := s.CreateSession(ctx, a.ID, time.Hour)
		require.NoError(t, err)
		other, err := s.CreateSession(ctx, a.ID, time.Hour)
		require.NoError(t, err)
		const secret = "tok_draft_secret_0123456789"
		const value = "value-typed-by-the-owner-42"
		d := store.Draft{
			Reason:  "invalid",
			Values:  map[string]string{"account_id": value},
			Flags:   map[string]bool{"clear-x": true},
			Secrets: map[string]redact.Secret{"api_token": secret},
		}

		_, err = s.GetDraft(ctx, sess.ID)
		assert.ErrorIs(t, err, store.ErrNotFound, "none yet")
		require.NoError(t, s.SaveDraft(ctx, sess.ID, d, 15*time.Minute))
		got, err := s.GetDraft(ctx, sess.ID)
		require.NoError(t, err)
		assert.Equal(t, d, got, "secrets included")
		_, err = s.GetDraft(ctx, other.ID)
		assert.ErrorIs(t, err, store.ErrNotFound, "another session has no draft")

		keys := keysContaining(t, b.raw, b.prefix, ":draft:"+sha256Hex(sess.ID.Reveal()))
		require.Len(t, keys, 1, "the draft key is named by sha256(session id)")
		text := rawText(t, b.raw, b.prefix)
		for _, clear := range []string{secret, value, sess.ID.Reveal()} {
			assert.NotContains(t, text, clear, "sealed: nothing typed in clear")
		}
		left, err := b.raw.TTL(ctx, keys[0]).Result()
		require.NoError(t, err)
		assert.Greater(t, left, time.Duration(0))
		assert.LessOrEqual(t, left, 15*time.Minute, "short-lived")

		// Bound to its session: the sealed value copied under another
		// session's draft key does not open there.
		sealed, err := b.raw.Get(ctx, keys[0]).Result()
		require.NoError(t, err)
		otherKey := strings.Replace(keys[0], sha256Hex(sess.ID.Reveal()), sha256Hex(other.ID.Reveal()), 1)
		require.NoError(t, b.raw.Set(ctx, otherKey, sealed, time.Minute).Err())
		_, err = s.GetDraft(ctx, other.ID)
		assert.ErrorIs(t, err, store.ErrNotFound, "a moved draft does not open")

		// A new draft replaces the old one.
		require.NoError(t, s.SaveDraft(ctx, sess.ID, store.Draft{Reason: "expired", Values: map[string]string{"a": "b"}}, 15*time.Minute))
		got, err = s.GetDraft(ctx, sess.ID)
		require.NoError(t, err)
		assert.Equal(t, store.Draft{Reason: "expired", Values: map[string]string{"a": "b"}}, got)

		require.NoError(t, s.DeleteDraft(ctx, sess.ID))
		_, err = s.GetDraft(ctx, sess.ID)
		assert.ErrorIs(t, err, store.ErrNotFound, "deleted")
		assert.NoError(t, s.DeleteDraft(ctx, sess.ID), "deleting twice is fine")

		// Ending the session ends its draft.
		require.NoError(t, s.SaveDraft(ctx, sess.ID, d, 15*time.Minute))
		require.NoError(t, s.DeleteSession(ctx, sess.ID))
		_, err = s.GetDraft(ctx, sess.ID)
		assert.ErrorIs(t, err, store.ErrNotFound, "gone with its session")
		assert.Empty(t, keysContaining(t, b.raw, b.prefix, sha256Hex(sess.ID.Reveal())))
		assert.ErrorIs(t, s.SaveDraft(ctx, sess.ID, d, 15*time.Minute), store.ErrNotFound, "no draft for an ended session")
		assert.ErrorIs(t, s.SaveDraft(ctx, "", d, 15*time.Minute), store.ErrNotFound)
	})
}

func TestDraftLivesNoLongerThanItsSession(t *testing.T) {
	forBackends(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		a := connect(t, b.s, shopURL(1), newAPIKey())
		sess, err := b.s.CreateSession(ctx, a.ID, 5*time.Minute)
		require.NoError(t, err)
		require.NoError(t, b.s.SaveDraft(ctx, sess.ID, store.Draft{Reason: "invalid"}, 15*time.Minute))
		keys := keysContaining(t, b.raw, b.prefix, ":draft:")
		require.Len(t, keys, 1)
		left, err := b.raw.TTL(ctx, keys[0]).Result()
		require.NoError(t, err)
		assert.LessOrEqual(t, left, 5*time.Minute, "capped at the session's own time left")
		if b.mr != nil {
			b.mr.FastForward(5*time.Minute + time.Second)
			_, err = b.s.GetDraft(ctx, sess.ID)
			assert.ErrorIs(t, err, store.ErrNotFound, "expired with the session")
		}
	})
}
