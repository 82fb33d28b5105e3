package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
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
	"github.com/modulehub/simpleconnect/verify"
)

// The worker against the real service (as its main builds it) and the
// fake CRM: a shop connects, the worker hears of it on the event stream
// and, with RetailCRM's client through the proxy, lists the shop's orders
// and creates one. The fake CRM sees the shop's key; the worker never had
// it.
func TestTheWorkerUsesAConnectedShopThroughTheProxy(t *testing.T) {
	redisURL := os.Getenv("REDIS_URL")
	prefix := "example-worker-" + time.Now().Format("150405.000000")
	if redisURL == "" {
		redisURL = "redis://" + miniredis.RunT(t).Addr()
	}
	const (
		token  = "service-token-example-01"
		secret = "module-secret-example"
		apiKey = "shop-api-key-example-01"
	)
	cfg := config.Config{
		ListenAddr: "127.0.0.1:0", PublicURL: "http://module.test", ModuleCode: "demo",
		ModuleSecrets: []redact.Secret{secret}, ModuleScopes: []string{"integration_read", "integration_write"},
		RedisURL: redact.Secret(redisURL), RedisKeyPrefix: prefix, EncryptionKeys: config.EncryptionKeys{seal.NewRandomKey()},
		CRMAllowInsecure: true, CRMTimeout: 5 * time.Second, SessionTTL: time.Hour, ShutdownTimeout: time.Second,
		LogFormat: "text", ServiceTokens: []redact.Secret{token},
	}.WithDefaults()
	require.NoError(t, cfg.Validate())
	service, err := app.New(t.Context(), cfg, app.NewLogger(io.Discard, "text", 0), app.Options{})
	require.NoError(t, err)
	t.Cleanup(func() {
		keys, _ := service.Store.Client().Keys(context.Background(), "*"+prefix+"*").Result()
		for _, k := range keys { // this test's keys only, never FLUSHDB
			service.Store.Client().Del(context.Background(), k)
		}
		_ = service.Close()
	})
	srv := httptest.NewServer(service.Server.Handler)
	t.Cleanup(srv.Close)
	fake := crmtest.New(t)

	// The worker's group starts at "$": it must exist before the shop
	// connects, as a worker deployed before the first shop would.
	require.NoError(t, service.Store.Client().XGroupCreateMkStream(t.Context(), "{"+prefix+"}:events", "example-worker", "$").Err())

	body, _ := json.Marshal(map[string]string{"apiKey": apiKey, "systemUrl": fake.URL, "token": verify.Sign(secret, apiKey)})
	resp, err := http.PostForm(srv.URL+"/register", url.Values{"register": {string(body)}})
	require.NoError(t, err)
	_ = resp.Body.Close()

	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = run(ctx, options{
		ServiceURL: srv.URL, ServiceToken: token, RedisURL: redisURL, KeyPrefix: prefix,
		Group: "example-worker", Name: "ci", Once: true, CreateOrder: true,
	}, &out)
	require.NoError(t, err)
	t.Log(out.String())
	assert.Contains(t, out.String(), ": 0 orders")
	assert.Contains(t, out.String(), `created order {"id":1,"status":201}`)
	assert.NotContains(t, out.String(), apiKey)

	var listed, created bool
	for _, c := range fake.Calls() {
		switch c.Path {
		case "/api/v5/orders":
			listed = true
			assert.Equal(t, apiKey, c.APIKey(), "the proxy added the shop's key")
		case "/api/v5/orders/create":
			created = true
			assert.Equal(t, apiKey, c.APIKey())
			assert.Empty(t, c.Header.Get("Authorization"), "the service token stayed with the service")
		}
	}
	assert.True(t, listed, "the worker listed the shop's orders")
	assert.True(t, created, "the worker created an order")
	require.Len(t, fake.Orders(apiKey), 1)
	assert.Equal(t, "Test", fake.Orders(apiKey)[0]["firstName"])
}
