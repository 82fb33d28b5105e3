package app_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/app"
	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/seal"
)

const sealedGauge = "simpleconnect_sealed_accounts"

// serve builds the app on the given Redis with keys as ENCRYPTION_KEY and
// serves it on 127.0.0.1:0; stop ends it (and is also run at cleanup).
func serve(t *testing.T, redisAddr string, keys ...[]byte) (base string, stop func()) {
	t.Helper()
	cfg := config.Config{
		ListenAddr: "127.0.0.1:0", PublicURL: "http://module.test", ModuleCode: "demo",
		ModuleSecrets: []redact.Secret{"dev"}, ModuleScopes: []string{"integration_read", "integration_write"},
		RedisURL: redact.Secret("redis://" + redisAddr), RedisKeyPrefix: "simpleconnect", EncryptionKeys: keys,
		AdminTokens:     []redact.Secret{"admin-token-0123456789"},
		CRMAllowedHosts: []string{"crm.test"}, CRMAllowInsecure: true,
		CRMTimeout: 5 * time.Second, SessionTTL: time.Hour, ShutdownTimeout: 5 * time.Second, LogFormat: "text",
	}.WithDefaults()
	require.NoError(t, cfg.Validate())
	a, err := app.New(t.Context(), cfg, slog.New(slog.DiscardHandler), app.Options{Resolver: crmtest.LoopbackResolver("crm.test")})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		assert.NoError(t, <-served)
		assert.NoError(t, a.Close())
	}
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}

// sealedAccounts scrapes /metrics and returns the gauge's value by key id.
func sealedAccounts(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, sealedGauge+`{key_id="`)
		if !ok {
			continue
		}
		id, value, ok := strings.Cut(rest, `"} `)
		require.True(t, ok, "a sample line: %q", line)
		v, err := strconv.ParseFloat(value, 64)
		require.NoError(t, err, line)
		out[id] = v
	}
	require.NoError(t, sc.Err())
	return out
}

func reseal(t *testing.T, base string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/admin/api/reseal", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer admin-token-0123456789")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	return string(body)
}

// simpleconnect_sealed_accounts{key_id} counts the accounts each
// encryption key seals, as the store keeps them: read at every start and
// after every sweep (each minute). Followed through the rotation runbook
// of docs/operations.md, one start per rolled-out step, it shows what an
// operator waits for: the new key's count rising with writes, and the old
// key's falling to none after the reseal.
func TestTheSealedAccountsGaugeCountsAccountsPerKeyThroughARotation(t *testing.T) {
	fake := crmtest.New(t)
	_, port, err := net.SplitHostPort(strings.TrimPrefix(fake.URL, "http://"))
	require.NoError(t, err)
	shop := func(n int) string { return fmt.Sprintf("http://shop-%d.crm.test:%s", n, port) }
	mr := miniredis.RunT(t)
	oldKey, newKey := seal.NewRandomKey(), seal.NewRandomKey()
	oldID, newID := seal.FormatKeyID(seal.KeyID(oldKey)), seal.FormatKeyID(seal.KeyID(newKey))

	base, stop := serve(t, mr.Addr(), oldKey)
	assert.Empty(t, sealedAccounts(t, base), "no account yet, no series")
	for i := range 3 {
		require.True(t, register(t, base, fmt.Sprintf("key-%d", i), shop(i)).Success)
	}
	stop()

	// 1. The new key is added second: writes still use the old one.
	base, stop = serve(t, mr.Addr(), oldKey, newKey)
	assert.Equal(t, map[string]float64{oldID: 3}, sealedAccounts(t, base), "three registers sealed with the only key")
	stop()

	// 2. The new key first: a new shop and a reconnecting one are written
	// with it (a write re-seals the whole account).
	base, stop = serve(t, mr.Addr(), newKey, oldKey)
	assert.Equal(t, map[string]float64{oldID: 3}, sealedAccounts(t, base))
	require.True(t, register(t, base, "key-3", shop(3)).Success)
	require.True(t, register(t, base, "key-0-new", shop(0)).Success)
	stop()
	base, stop = serve(t, mr.Addr(), newKey, oldKey)
	assert.Equal(t, map[string]float64{oldID: 2, newID: 2}, sealedAccounts(t, base), "the new shop and the reconnected one moved to the new key")

	// 3. Reseal.
	assert.Contains(t, reseal(t, base), `"unreadable":0`)
	stop()

	// 4. The old key goes: the start's own check lets it, and the gauge
	// says why.
	base, _ = serve(t, mr.Addr(), newKey)
	assert.Equal(t, map[string]float64{newID: 4}, sealedAccounts(t, base), "every account is on the new key, none on the old")
}
