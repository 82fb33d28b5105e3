package store_test

import (
	"bytes"
	"context"
	"log/slog"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/redact/redacttest"
	"github.com/modulehub/simpleconnect/seal"
	"github.com/modulehub/simpleconnect/store"
)

func TestPingAndClose(t *testing.T) {
	forBackends(t, func(t *testing.T, b *backend) {
		ctx := t.Context()
		require.NoError(t, b.s.Ping(ctx))

		s, err := store.New(b.dial(), b.prefix, b.key)
		require.NoError(t, err)
		require.NoError(t, s.Ping(ctx))
		require.NoError(t, s.Close())
		assert.Error(t, s.Ping(ctx), "a closed store does not answer")
		assert.NoError(t, s.Close(), "closing twice is harmless")
		assert.NoError(t, b.s.Ping(ctx), "another store on the same Redis is unaffected")
	})
}

func TestNewRejectsBadArguments(t *testing.T) {
	cases := []struct {
		name   string
		prefix string
		keys   [][]byte
	}{
		{"empty prefix", "", [][]byte{seal.NewRandomKey()}},
		{"no encryption key", "p", nil},
		{"short encryption key", "p", [][]byte{make([]byte, 16)}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			_, err := store.New(nil, tt.prefix, tt.keys...)
			assert.Error(t, err)
		})
	}
}

func TestOpenEmbedded(t *testing.T) {
	ctx := t.Context()
	var logs redacttest.Log
	s, err := store.Open(ctx, store.Options{Prefix: "simpleconnect", Log: slog.New(slog.NewTextHandler(&logs, nil))})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	assert.Contains(t, logs.String(), "mode=embedded")
	assert.Contains(t, logs.String(), "level=WARN", "the embedded store warns that it is for development")

	clk := newClock(s)
	url, key := shopURL(1), newAPIKey()
	a := connect(t, s, url, key)
	got, err := s.FindByClientID(ctx, a.ClientID)
	require.NoError(t, err)
	assert.Equal(t, key, got.APIKey)
	assert.Equal(t, url, got.SystemURL)
	clk.Advance(time.Second)
	_, err = s.SetActivity(ctx, a.ID, store.State{Active: true, Frozen: true}, store.Lease{})
	require.NoError(t, err)
	page, err := s.List(ctx, store.ListQuery{Status: store.StatusFrozen})
	require.NoError(t, err)
	require.Len(t, page.Accounts, 1)
	assert.Equal(t, a.ID, page.Accounts[0].ID)
	assert.Equal(t, []string{store.EventConnected, store.EventActivity}, eventTypes(t, s))
	sess, err := s.CreateSession(ctx, a.ID, time.Hour)
	require.NoError(t, err)
	gotSess, err := s.GetSession(ctx, sess.ID)
	require.NoError(t, err)
	assert.Equal(t, a.ID, gotSess.AccountID)
	require.NoError(t, s.Ping(ctx))

	require.NoError(t, s.Close())
	assert.Error(t, s.Ping(ctx), "Close stops the embedded Redis")
}

// On the embedded store, keys expire as on Redis: its clock moves with the
// wall clock (here, with the ticks the test sends), so a session ends after
// its TTL instead of living as long as the process.
func TestEmbeddedStoreExpiresSessions(t *testing.T) {
	ctx := t.Context()
	start := time.Now()
	tick := make(chan time.Time)
	s, err := store.Open(ctx, store.EmbeddedClock(store.Options{Prefix: "simpleconnect"}, start, tick))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	// A send returns once the clock took the tick; the second one, once it
	// applied the first.
	at := func(d time.Duration) { tick <- start.Add(d); tick <- start.Add(d) }

	sess, err := s.CreateSession(ctx, "acct-1", 10*time.Minute)
	require.NoError(t, err)
	at(9 * time.Minute)
	_, err = s.GetSession(ctx, sess.ID)
	require.NoError(t, err, "within its TTL the session lives")

	at(10*time.Minute + time.Second)
	_, err = s.GetSession(ctx, sess.ID)
	assert.ErrorIs(t, err, store.ErrNotFound, "past its TTL the session is gone")

	require.NoError(t, s.Close())
	select {
	case tick <- start.Add(time.Hour):
		t.Error("the clock still runs after Close")
	default:
	}
}

// embeddedServers counts running miniredis servers in this process: the
// goroutine each starts to accept connections. Its outer function is
// counted, not (*Server).serve, which a goroutine not yet scheduled does
// not show.
func embeddedServers(t *testing.T) int {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, pprof.Lookup("goroutine").WriteTo(&buf, 2))
	return strings.Count(buf.String(), "miniredis/v2/server.newServer.func1(")
}

// TestOpenEmbeddedFailureStopsIt counts every embedded server of the
// process, so it must not run in parallel with tests that start one.
func TestOpenEmbeddedFailureStopsIt(t *testing.T) {
	miniredis.RunT(t) // one running for sure, so the count is seen to work
	before := embeddedServers(t)
	require.Positive(t, before, "the count sees a running miniredis")
	_, err := store.Open(t.Context(), store.Options{Prefix: ""}) // New refuses an empty prefix
	require.Error(t, err)
	// miniredis's Close returns before its serve goroutine has ended: wait
	// for the count to come back (it never does if the server was left
	// running).
	assert.Eventually(t, func() bool { return embeddedServers(t) == before }, 5*time.Second, 5*time.Millisecond,
		"a failed Open leaves no embedded Redis running")
}

func TestOpenBadURL(t *testing.T) {
	const password = "hunter2-Pa55word"
	cases := []struct {
		name string
		url  string
	}{
		{"not a redis scheme", "http://admin:" + password + "@127.0.0.1:6379/0"},
		{"bad port", "redis://admin:" + password + "@127.0.0.1:port/0"},
		{"bad database number", "redis://admin:" + password + "@127.0.0.1:6379/db"},
		{"not a URL", "redis://admin:" + password + "@[::1/0"},
		{"nobody listening", "redis://admin:" + password + "@127.0.0.1:1/0"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			s, err := store.Open(ctx, store.Options{
				URL: redact.Secret(tt.url), Prefix: "p", EncryptionKeys: [][]byte{seal.NewRandomKey()},
			})
			if s != nil {
				_ = s.Close()
			}
			require.Error(t, err)
			assert.NotContains(t, err.Error(), password, "the error shows no password")
		})
	}

	t.Run("a real Redis without an encryption key", func(t *testing.T) {
		_, err := store.Open(t.Context(), store.Options{URL: "redis://127.0.0.1:1/0", Prefix: "p"})
		require.Error(t, err, "only the embedded store makes an ephemeral key")
		assert.Contains(t, err.Error(), "encryption key")
	})
}
