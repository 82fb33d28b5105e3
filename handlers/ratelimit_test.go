package handlers_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/handlers"
	"github.com/modulehub/simpleconnect/ratelimit"
	"github.com/modulehub/simpleconnect/redact/redacttest"
)

func TestPublicEndpointsAreRateLimitedPerClient(t *testing.T) {
	h := newHarness(t, nil)
	limiter := ratelimit.New(h.store.Client(), "test", 3)
	srv := httptest.NewServer(handlers.New(handlers.Deps{
		Config: h.cfg, Log: slog.New(slog.DiscardHandler), Connector: stubConnector{},
		Accounts: h.store, Sessions: h.store, Store: h.store, Limiter: limiter,
	}))
	defer srv.Close()

	post := func(path string, header map[string]string) *http.Response {
		req, err := http.NewRequest(http.MethodPost, srv.URL+path, nil)
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	for i := range 3 {
		resp := post("/activity", nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode, "request %d is within the limit", i+1)
		assert.Empty(t, resp.Header.Get("Retry-After"))
	}
	resp := post("/activity", map[string]string{"X-Forwarded-For": "203.0.113.9"})
	assert.NotEmpty(t, resp.Header.Get("Retry-After"), "the 4th is limited, whatever X-Forwarded-For claims")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the CRM's webhooks still answer 200")

	resp = post("/account", nil)
	assert.Empty(t, resp.Header.Get("Retry-After"), "each route has its own budget")

	form := url.Values{"clientId": {"x"}}
	var last int
	for range 3 { // one /account request was made above
		resp, err := http.PostForm(srv.URL+"/account", form)
		require.NoError(t, err)
		resp.Body.Close()
		last = resp.StatusCode
	}
	assert.Equal(t, http.StatusTooManyRequests, last, "pages answer 429")
}

func TestRequestsGoThroughWhenTheRateLimitersRedisFails(t *testing.T) {
	h := newHarness(t, nil)
	acc := h.connected("key-limiter-down")

	gone := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: gone.Addr(), MaxRetries: -1, DialerRetries: 1}) // fail at once
	t.Cleanup(func() { _ = rdb.Close() })
	gone.Close() // the limiter's Redis is down; the store's still answers
	var logs redacttest.Log
	srv := httptest.NewServer(handlers.New(handlers.Deps{
		Config: h.cfg, Log: slog.New(slog.NewTextHandler(&logs, nil)), Connector: stubConnector{},
		Accounts: h.store, Sessions: h.store, Store: h.store, Limiter: ratelimit.New(rdb, "test", 1),
	}))
	t.Cleanup(srv.Close)

	// One request a minute: a limiter that worked would refuse the second.
	for i := range 3 {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/account", strings.NewReader(url.Values{"clientId": {acc.ClientID.Reveal()}}.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, body := h.do(req)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, "login %d: the owner gets in; body: %s", i+1, body)
		assert.Equal(t, "/account", resp.Header.Get("Location"))
		assert.Empty(t, resp.Header.Get("Retry-After"))
	}
	assert.Contains(t, logs.String(), "rate limiter unavailable; letting the request through")
	redacttest.AssertAbsent(t, logs.String(), acc.ClientID.Reveal())
}
