package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/app"
	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/redact"
)

// service starts the real HTTP surface on the embedded store, configured as
// the README's run command does.
func service(t *testing.T) *httptest.Server {
	t.Helper()
	cfg := config.Config{
		ListenAddr: "127.0.0.1:0", PublicURL: "http://localhost:8080", ModuleCode: "demo",
		ModuleSecrets: []redact.Secret{"dev"}, ModuleScopes: []string{"integration_read", "integration_write"},
		RedisKeyPrefix: "simpleconnect", CRMAllowInsecure: true, CRMAllowedHosts: []string{"127.0.0.1"}, CRMTimeout: 2 * time.Second,
		SessionTTL: time.Hour, ShutdownTimeout: time.Second, LogFormat: "text",
	}.WithDefaults()
	require.NoError(t, cfg.Validate())
	a, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler), app.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	srv := httptest.NewServer(a.Server.Handler)
	t.Cleanup(srv.Close)
	return srv
}

func TestSimulatorPlaysTheWholeConnection(t *testing.T) {
	srv := service(t)
	var out bytes.Buffer
	require.NoError(t, run([]string{"-service", srv.URL, "-secret", "dev"}, &out), out.String())
	text := out.String()
	for _, step := range []string{
		"1. The owner opens the module card", "success=true scopes=[integration_read integration_write]",
		"2. The owner clicks Connect", "[fake CRM] POST /api/v5/integration-modules/demo/edit",
		"3. The CRM now lists the module: code=demo active=true",
		"4. The CRM sends the owner's browser", "HTTP 303 Location=/account session cookie set=true",
		"page shows the shop address: true, state: active",
		"5. The owner switches the module off", "The whole simple connection worked.",
	} {
		assert.Contains(t, text, step)
	}
	assert.NotContains(t, text, "sim-api-key-0001", "the key is masked in the transcript")
}

func TestSimulatorReportsAWrongSecret(t *testing.T) {
	srv := service(t)
	var out bytes.Buffer
	err := run([]string{"-service", srv.URL, "-secret", "not-the-module-secret"}, &out)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "invalid token")
	assert.True(t, strings.Contains(out.String(), "success=false"), out.String())
}

func TestTheFakeCRMSaysTheRateItSaw(t *testing.T) {
	r := &rate{}
	t0 := time.Now()
	assert.Equal(t, 1, r.add(t0))
	assert.Equal(t, 2, r.add(t0.Add(500*time.Millisecond)))
	assert.Equal(t, 3, r.add(t0.Add(999*time.Millisecond)))
	assert.Equal(t, 2, r.add(t0.Add(1500*time.Millisecond)), "the first fell out of the second")

	srv := service(t)
	var out bytes.Buffer
	require.NoError(t, run([]string{"-service", srv.URL, "-secret", "dev"}, &out), out.String())
	assert.Contains(t, out.String(), "(X-API-KEY sim-…, 1 in the last second)")
}
