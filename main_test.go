package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/redact/redacttest"
	"github.com/modulehub/simpleconnect/verify"
)

// startRun starts the real program on 127.0.0.1:0 and returns its base URL,
// its log and a stop function that returns run's error.
func startRun(t *testing.T, cfg config.Config) (string, *redacttest.Log, func() error) {
	t.Helper()
	require.NoError(t, cfg.Validate())
	ctx, cancel := context.WithCancel(context.Background())
	logs := &redacttest.Log{}
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, logs, func(a string) { addr <- a }) }()
	select {
	case a := <-addr:
		var once sync.Once
		var err error
		stop := func() error {
			once.Do(func() { cancel(); err = <-done })
			return err
		}
		t.Cleanup(func() { _ = stop() })
		return "http://" + a, logs, stop
	case err := <-done:
		cancel()
		t.Fatalf("run failed to start: %v\n%s", err, logs.String())
	}
	return "", nil, nil
}

func devConfig() config.Config {
	return config.Config{
		ListenAddr: "127.0.0.1:0", PublicURL: "http://module.test", ModuleCode: "demo",
		ModuleSecrets: []redact.Secret{"dev-secret"}, ModuleScopes: []string{"integration_read", "integration_write"},
		RedisKeyPrefix: "simpleconnect", CRMAllowInsecure: true, CRMAllowedHosts: []string{"127.0.0.1"}, CRMTimeout: 2 * time.Second,
		SessionTTL: time.Hour, ShutdownTimeout: 5 * time.Second, LogFormat: "json",
	}.WithDefaults()
}

func TestRunServesTheWholeFlowOnTheEmbeddedStore(t *testing.T) {
	fake := crmtest.New(t)
	base, logs, stop := startRun(t, devConfig())

	resp, err := http.Get(base + "/config")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Contains(t, string(body), `"registerUrl":"http://module.test/register"`)

	token := verify.Sign("dev-secret", "main-test-key")
	reg, err := json.Marshal(map[string]string{"apiKey": "main-test-key", "systemUrl": fake.URL, "token": token})
	require.NoError(t, err)
	resp, err = http.PostForm(base+"/register", url.Values{"register": {string(reg)}})
	require.NoError(t, err)
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.JSONEq(t, `{"success":true,"accountUrl":"http://module.test/account"}`, string(body))
	require.Len(t, fake.Edits(), 1)

	require.NoError(t, stop(), "a cancelled context is a clean exit")
	out := logs.String()
	assert.Contains(t, out, "development only")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		assert.True(t, json.Valid([]byte(line)), "LOG_FORMAT=json writes JSON lines: %s", line)
	}
	assert.NotContains(t, out, "main-test-key")
	assert.NotContains(t, out, token)
	assert.NotContains(t, out, "dev-secret")
}

func TestRunFailsFastOnABusyPort(t *testing.T) {
	base, _, _ := startRun(t, devConfig())
	cfg := devConfig()
	cfg.ListenAddr = strings.TrimPrefix(base, "http://")
	err := run(context.Background(), cfg, io.Discard, func(string) { t.Error("must not become ready") })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "listen")
}

func TestMetricsCountRegistersAndCRMCallsWithoutSecrets(t *testing.T) {
	fake := crmtest.New(t, crmtest.Edit("key-metrics", crmtest.Status(503), crmtest.OK()))
	base, _, _ := startRun(t, devConfig())

	token := verify.Sign("dev-secret", "key-metrics")
	reg, err := json.Marshal(map[string]string{"apiKey": "key-metrics", "systemUrl": fake.URL, "token": token})
	require.NoError(t, err)
	resp, err := http.PostForm(base+"/register", url.Values{"register": {string(reg)}})
	require.NoError(t, err)
	resp.Body.Close()
	bad, err := json.Marshal(map[string]string{"apiKey": "key-metrics", "systemUrl": fake.URL, "token": strings.Repeat("0", 64)})
	require.NoError(t, err)
	resp, err = http.PostForm(base+"/register", url.Values{"register": {string(bad)}})
	require.NoError(t, err)
	resp.Body.Close()

	resp, err = http.Get(base + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	text := string(body)
	for _, want := range []string{
		`simpleconnect_registers_total{outcome="ok"} 1`,
		`simpleconnect_registers_total{outcome="bad_token"} 1`,
		`simpleconnect_crm_requests_total{op="credentials",status="2xx"} 1`,
		`simpleconnect_crm_requests_total{op="edit",status="5xx"} 1`,
		`simpleconnect_crm_requests_total{op="edit",status="2xx"} 1`,
		`simpleconnect_crm_retries_total{op="edit"} 1`,
		`simpleconnect_http_requests_total{method="POST",route="/register",status="2xx"} 2`,
		`simpleconnect_crm_request_duration_seconds_count{op="edit"} 2`,
	} {
		assert.Contains(t, text, want)
	}
	u, err := url.Parse(fake.URL)
	require.NoError(t, err)
	for _, secret := range []string{"key-metrics", token, "dev-secret", u.Host} {
		assert.NotContains(t, text, secret, "no credential or shop address in a label")
	}
}
