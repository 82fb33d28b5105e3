package crm_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/redact"
)

func TestCleanAPIPathRefusesEveryEscape(t *testing.T) {
	good := map[string]string{
		"api/v5/orders":                 "api/v5/orders",
		"api/credentials":               "api/credentials",
		"api/v5/orders/A%20B/edit":      "api/v5/orders/A B/edit",
		"api/v5/orders/%D0%B0%D0%B1":    "api/v5/orders/аб",
		"api/v5/store/products/batch":   "api/v5/store/products/batch",
		"api/v5/orders/1.5/edit":        "api/v5/orders/1.5/edit",
		"api/v5/customers/history..old": "api/v5/customers/history..old",
	}
	for raw, want := range good {
		got, err := crm.CleanAPIPath(raw)
		if assert.NoError(t, err, raw) {
			assert.Equal(t, want, got, raw)
		}
	}
	bad := []string{
		"", "api", "API/v5/orders", "v5/orders", "/api/v5/orders", "admin/api/accounts",
		"api/../admin", "api/v5/../../etc/passwd", "api/./v5", "api/v5/..", "api//v5", "api/v5/",
		"api%2F..%2Fadmin", "api/v5%2forders", "api/%2e%2e/admin", "api/%2E%2E/x", "api/.%2e/x",
		"api/%252e%252e/x", "api\\..\\admin", "api/v5%5c..%5cx",
		"https://evil.example/api/v5", "//evil.example/api/v5", "api/v5/orders%00", "api/v5/%0d%0aX: y",
		"api/%zz", "%61pi/v5/orders/../../x",
	}
	for _, raw := range bad {
		_, err := crm.CleanAPIPath(raw)
		assert.ErrorIs(t, err, crm.ErrBadPath, raw)
	}
}

func TestForwardHeaderDropsCredentialsAndHopHeadersAndInjectsTheKey(t *testing.T) {
	in := http.Header{
		"Authorization":       {"Bearer service-token-0123456789"},
		"Cookie":              {"session=abc"},
		"X-Api-Key":           {"callers-own-key"},
		"Connection":          {"keep-alive, X-Custom-Hop"},
		"X-Custom-Hop":        {"1"},
		"Keep-Alive":          {"timeout=5"},
		"Te":                  {"trailers"},
		"Upgrade":             {"websocket"},
		"Proxy-Authorization": {"Basic eA=="},
		"X-Forwarded-For":     {"10.0.0.1"},
		"Accept-Encoding":     {"br"},
		"Content-Type":        {"application/x-www-form-urlencoded"},
		"Accept":              {"application/json"},
		"User-Agent":          {"worker/1"},
	}
	out := crm.ForwardHeader(in, "shop-key")
	for _, h := range []string{"Authorization", "Cookie", "Connection", "X-Custom-Hop", "Keep-Alive", "Te", "Upgrade", "Proxy-Authorization", "X-Forwarded-For", "Accept-Encoding"} {
		assert.Empty(t, out.Values(h), h)
	}
	assert.Equal(t, []string{"shop-key"}, out.Values("X-API-KEY"), "the shop's key, and only it")
	assert.Equal(t, "application/x-www-form-urlencoded", out.Get("Content-Type"))
	assert.Equal(t, "application/json", out.Get("Accept"))
	assert.Equal(t, "worker/1", out.Get("User-Agent"))
	assert.Equal(t, "callers-own-key", in.Get("X-Api-Key"), "the caller's header is left alone")
}

func forwardClient() *crm.Client {
	return crm.New(crm.Options{Timeout: 2 * time.Second, AllowInsecure: true, RetryWait: time.Millisecond, RetryMaxWait: 5 * time.Millisecond})
}

func TestForwardRetriesA503OnlyForIdempotentCalls(t *testing.T) {
	fake := crmtest.New(t,
		crmtest.API("GET", "/api/v5/orders", crmtest.Status(503), crmtest.Status(429), crmtest.JSON(200, `{"success":true,"orders":[]}`)),
		crmtest.API("POST", "/api/v5/orders/create", crmtest.Status(503), crmtest.JSON(201, `{"success":true,"id":1}`)),
	)
	c := forwardClient()
	waits := 0
	resp, err := c.Forward(t.Context(), fake.URL, "shop-key", crm.ForwardRequest{
		Method: "GET", Path: "api/v5/orders", RawQuery: "limit=20", ContentLength: 0,
		Wait: func(context.Context) error { waits++; return nil },
	})
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, 200, resp.StatusCode, string(body))
	assert.Equal(t, 3, waits, "every attempt takes its turn in the shop's queue")
	calls := fake.Calls()
	require.Len(t, calls, 3)
	assert.Equal(t, "limit=20", calls[2].RawQuery)
	assert.Equal(t, "shop-key", calls[2].APIKey())

	resp, err = c.Forward(t.Context(), fake.URL, "shop-key", crm.ForwardRequest{
		Method: "POST", Path: "api/v5/orders/create", Body: strings.NewReader("order=%7B%7D"), ContentLength: 12,
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
	})
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode, "a POST is never sent twice: the 503 goes back to the caller")
	assert.Len(t, fake.Calls(), 4)
}

func TestForwardSendsNothingForABadPathOrWhenTheQueueRefuses(t *testing.T) {
	fake := crmtest.New(t)
	c := forwardClient()
	_, err := c.Forward(t.Context(), fake.URL, "k", crm.ForwardRequest{Method: "GET", Path: "api/../x"})
	assert.ErrorIs(t, err, crm.ErrBadPath)
	full := errors.New("queue full")
	_, err = c.Forward(t.Context(), fake.URL, "k", crm.ForwardRequest{Method: "GET", Path: "api/v5/orders", Wait: func(context.Context) error { return full }})
	assert.ErrorIs(t, err, full)
	assert.Zero(t, fake.Connections(), "nothing reached the CRM")
}

func TestForwardFollowsNoRedirectAndDialsOnlyPublicAddresses(t *testing.T) {
	fake := crmtest.New(t, crmtest.API("GET", "/api/v5/orders", crmtest.Reply{Status: 302, Header: map[string]string{"Location": "http://127.0.0.1:1/"}}))
	resp, err := forwardClient().Forward(t.Context(), fake.URL, "k", crm.ForwardRequest{Method: "GET", Path: "api/v5/orders"})
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, 302, resp.StatusCode, "the redirect is the caller's to see, not ours to follow")
	assert.Len(t, fake.Calls(), 1)

	guarded := crm.New(crm.Options{Timeout: time.Second}) // the guard on: loopback is refused at dial time
	_, err = guarded.Forward(t.Context(), fake.URL, redact.Secret("k"), crm.ForwardRequest{Method: "GET", Path: "api/v5/orders"})
	assert.ErrorIs(t, err, crm.ErrBlocked)
	assert.Len(t, fake.Calls(), 1, "nothing more reached it")
}

// Ready runs once the attempt has its connection, before anything is
// written: its refusal sends nothing.
func TestForwardChecksTheTurnOnceConnectedAndSendsNothingWhenItFails(t *testing.T) {
	fake := crmtest.New(t)
	missed := errors.New("turn missed")
	var readyCalls int
	_, err := forwardClient().Forward(t.Context(), fake.URL, "k", crm.ForwardRequest{
		Method: "GET", Path: "api/v5/orders",
		Ready: func(context.Context) error { readyCalls++; return missed },
	})
	assert.ErrorIs(t, err, missed)
	assert.Equal(t, 1, readyCalls)
	assert.Empty(t, fake.Calls(), "the connection was made, the request never written")

	resp, err := forwardClient().Forward(t.Context(), fake.URL, "k", crm.ForwardRequest{
		Method: "GET", Path: "api/v5/orders", Ready: func(context.Context) error { readyCalls++; return nil },
	})
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, 2, readyCalls)
	assert.Len(t, fake.Calls(), 1)
}

// A failed proxied call's error names the host, never the path's query.
func TestAForwardErrorQuotesNoQuery(t *testing.T) {
	down := crmtest.New(t)
	down.Close()
	_, err := forwardClient().Forward(t.Context(), down.URL, "shop-key-quoted", crm.ForwardRequest{
		Method: "GET", Path: "api/v5/orders", RawQuery: "filter%5Bemail%5D=ann%40example.com",
	})
	require.ErrorIs(t, err, crm.ErrUnavailable)
	assert.NotContains(t, err.Error(), "ann")
	assert.NotContains(t, err.Error(), "shop-key-quoted")
}
