package store_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/alicebob/miniredis/v2/server"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/redact/redacttest"
	"github.com/modulehub/simpleconnect/seal"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/store/storetest"
)

// openLogged opens a store with o, logging to the returned buffer.
func openLogged(ctx context.Context, t *testing.T, o store.Options) (*store.Redis, *redacttest.Log, error) {
	t.Helper()
	logs := &redacttest.Log{}
	o.Log = slog.New(slog.NewTextHandler(logs, nil))
	if o.EncryptionKeys == nil {
		o.EncryptionKeys = [][]byte{seal.NewRandomKey()}
	}
	s, err := store.Open(ctx, o)
	if err == nil {
		t.Cleanup(func() { _ = s.Close() })
	}
	return s, logs, err
}

func TestOpenClusterFromOneSeedNode(t *testing.T) {
	addrs := storetest.ClusterAddrs(t)
	prefix := "test-" + storetest.RandomHex(8)
	// One seed is enough: the client must learn the other nodes itself,
	// which only a cluster client does (with several seeds, go-redis picks
	// a cluster client whatever it is told).
	s, logs, err := openLogged(t.Context(), t, store.Options{ClusterAddrs: addrs[:1], Prefix: prefix})
	require.NoError(t, err)
	t.Cleanup(func() { (&storetest.Backend{Name: "cluster", Prefix: prefix, Raw: s.Client()}).DeleteKeys(t) })
	assert.Contains(t, logs.String(), "mode=cluster")
	require.IsType(t, &redis.ClusterClient{}, s.Client())

	a := connect(t, s, shopURL(1), newAPIKey())
	got, err := s.FindByClientID(t.Context(), a.ClientID)
	require.NoError(t, err)
	assert.Equal(t, a.ID, got.ID)
	var masters atomic.Int32 // ForEachMaster calls in parallel
	require.NoError(t, s.Client().(*redis.ClusterClient).ForEachMaster(t.Context(), func(ctx context.Context, c *redis.Client) error {
		masters.Add(1)
		return c.Ping(ctx).Err()
	}))
	assert.EqualValues(t, len(addrs), masters.Load(), "the client found every master from one seed")
}

// fakeSentinel is a miniredis that also answers the SENTINEL questions a
// client asks before it follows a master (go-redis asks where the master
// called name is, and which other sentinels there are); it places the
// master at master's address. A real sentinel needs a real master and two
// more processes; this one runs in every go test, with no Redis around.
func fakeSentinel(t *testing.T, name string, master *miniredis.Miniredis) *miniredis.Miniredis {
	t.Helper()
	host, port, err := net.SplitHostPort(master.Addr())
	require.NoError(t, err)
	s := miniredis.RunT(t)
	require.NoError(t, s.Server().Register("SENTINEL", func(c *server.Peer, _ string, args []string) {
		switch {
		case len(args) == 2 && strings.EqualFold(args[0], "get-master-addr-by-name"):
			if args[1] != name {
				c.WriteNull() // as a sentinel answers for a master it does not watch
				return
			}
			c.WriteLen(2)
			c.WriteBulk(host)
			c.WriteBulk(port)
		case len(args) == 2 && strings.EqualFold(args[0], "sentinels"):
			c.WriteLen(0)
		default:
			c.WriteError("ERR unknown sentinel subcommand")
		}
	}))
	return s
}

func TestOpenSentinel(t *testing.T) {
	const password = "sentinel-master-Pa55word"
	master := miniredis.RunT(t)
	master.RequireAuth(password)
	sentinel := fakeSentinel(t, "accounts", master)

	s, logs, err := openLogged(t.Context(), t, store.Options{
		SentinelMaster: "accounts", SentinelAddrs: []string{sentinel.Addr()}, Password: password, Prefix: "simpleconnect",
	})
	require.NoError(t, err)
	assert.Contains(t, logs.String(), "mode=sentinel")
	a := connect(t, s, shopURL(1), newAPIKey())
	got, err := s.Get(t.Context(), a.ID)
	require.NoError(t, err)
	assert.Equal(t, a.SystemURL, got.SystemURL)
	assert.NotEmpty(t, master.Keys(), "the accounts live on the master the sentinel named, reached with REDIS_PASSWORD")
	assert.Empty(t, sentinel.Keys(), "nothing is written to the sentinel")
	redacttest.AssertAbsent(t, logs.String(), password)

	failures := []struct {
		name string
		o    store.Options
	}{
		{"a master the sentinel does not watch", store.Options{SentinelMaster: "other", SentinelAddrs: []string{sentinel.Addr()}, Password: password}},
		{"a wrong password", store.Options{SentinelMaster: "accounts", SentinelAddrs: []string{sentinel.Addr()}, Password: "wrong-" + password}},
		{"no sentinel answers", store.Options{SentinelMaster: "accounts", SentinelAddrs: []string{"127.0.0.1:1"}, Password: password}},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Prefix = "simpleconnect"
			// It cannot succeed: no need to wait out Open's own 5 s bound.
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			_, logs, err := openLogged(ctx, t, tt.o)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "store: sentinel redis does not answer")
			redacttest.AssertAbsent(t, err.Error()+logs.String(), strings.TrimPrefix(tt.o.Password.Reveal(), "wrong-"))
		})
	}
}
