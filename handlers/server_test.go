package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/connect"
	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/handlers"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/redact/redacttest"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/verify"
)

// stubConnector fails or panics on demand, to drive the error handler.
type stubConnector struct {
	err   error
	panic bool
}

func (s stubConnector) Connect(context.Context, string, redact.Secret) (store.Account, error) {
	if s.panic {
		panic("boom with key-should-not-leak")
	}
	return store.Account{}, s.err
}

func (s stubConnector) Deactivate(context.Context, string, bool) (store.Account, error) {
	return store.Account{}, s.err
}

func (s stubConnector) Resync(context.Context, string) (store.Account, error) {
	return store.Account{}, s.err
}

func (s stubConnector) Activity(context.Context, store.Account, store.State, string, bool) (store.Account, error) {
	return store.Account{}, s.err
}

func TestErrorHandlerMapsEveryFailureToTheCRMsShape(t *testing.T) {
	h := newHarness(t, nil)
	cases := []struct {
		name string
		conn stubConnector
		want string
	}{
		{"wrapped CRM unavailable", stubConnector{err: errors.Join(errors.New("ctx"), crm.ErrUnavailable)}, "not answering"},
		// Not the CRM's fault: it was never asked, and waiting a minute helps.
		{"another exchange with the shop still under way", stubConnector{err: fmt.Errorf("deactivate: %w", connect.ErrBusy)}, "still in progress. Try again in a minute."},
		{"CRM payment", stubConnector{err: &crm.Error{Kind: crm.ErrPaymentRequired, Op: "edit", Status: 402}}, "insufficient funds"},
		{"internal error with an address in it", stubConnector{err: errors.New("dial 10.0.0.3:6379: connection refused")}, "Something went wrong on our side"},
		{"panic", stubConnector{panic: true}, "Something went wrong on our side"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs redacttest.Log
			srv := httptest.NewServer(handlers.New(handlers.Deps{
				Config: h.cfg, Log: slog.New(slog.NewTextHandler(&logs, nil)),
				Connector: tc.conn, Accounts: h.store, Sessions: h.store, Store: h.store,
			}))
			defer srv.Close()
			token := verify.Sign(testSecret, "key-stub")
			resp, err := http.PostForm(srv.URL+"/register", url.Values{
				"register": {`{"apiKey":"key-stub","systemUrl":"` + h.fake.URL + `","token":"` + token + `"}`},
			})
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			r := decodeWebhook(t, resp, string(body))
			assert.False(t, r.Success)
			assert.Contains(t, r.ErrorMsg, tc.want)
			assert.NotContains(t, r.ErrorMsg, "10.0.0.3")
			assert.NotContains(t, r.ErrorMsg, "boom")
			assert.NotContains(t, logs.String(), "key-stub")
			assert.NotContains(t, logs.String(), token)
		})
	}
}

func TestHealthAndReadiness(t *testing.T) {
	h := newHarness(t, nil)
	resp, _ := h.get("/healthz")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = h.get("/readyz")
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	h.mr.Close() // the store stops answering
	resp, _ = h.get("/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	resp, _ = h.get("/healthz")
	assert.Equal(t, http.StatusOK, resp.StatusCode, "the process is alive all the same")
}

func TestStoreDownDuringRegisterAnswersGenerically(t *testing.T) {
	h := newHarness(t, nil)
	h.mr.Close()
	r := h.register("key-store-down", h.fake.URL)
	assert.False(t, r.Success)
	assert.Contains(t, r.ErrorMsg, "Something went wrong on our side")
	assert.Empty(t, h.fake.Edits(), "no edit is sent when the attempt cannot be recorded")
}

func TestEveryReplyCarriesSecurityHeaders(t *testing.T) {
	h := newHarness(t, nil)
	for _, path := range []string{"/config", "/account", "/healthz", "/nowhere", "/static/style.css"} {
		resp, _ := h.get(path)
		assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), path)
		csp := resp.Header.Get("Content-Security-Policy")
		assert.Contains(t, csp, "default-src 'none'", path)
		assert.Contains(t, csp, "frame-ancestors 'none'", path)
		assert.NotEmpty(t, resp.Header.Get("X-Request-ID"), path)
	}
	// Pages also keep their referrer and refuse framing the old way; JSON
	// replies need neither.
	for _, path := range []string{"/account", "/nowhere"} {
		resp, _ := h.get(path)
		assert.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"), path)
		assert.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"), path)
		assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "form-action 'self'", path)
	}
	resp, _ := h.get("/account")
	csp := resp.Header.Get("Content-Security-Policy")
	assert.Contains(t, csp, "script-src 'self';", "scripts from our own files only")
	assert.NotContains(t, csp, "unsafe-inline", "never inline code")
	resp, _ = h.get("/config")
	assert.Equal(t, "default-src 'none'; frame-ancestors 'none'", resp.Header.Get("Content-Security-Policy"), "JSON allows nothing at all")
}

func TestRequestIDIsTakenFromTheCaller(t *testing.T) {
	h := newHarness(t, nil)
	req, err := http.NewRequest(http.MethodGet, h.srv.URL+"/config", nil)
	require.NoError(t, err)
	req.Header.Set("X-Request-ID", "abc-123")
	resp, _ := h.do(req)
	assert.Equal(t, "abc-123", resp.Header.Get("X-Request-ID"))
	assert.Contains(t, h.logs.String(), "request_id=abc-123")

	req.Header.Set("X-Request-ID", "bad id with spaces")
	resp, _ = h.do(req)
	assert.NotContains(t, resp.Header.Get("X-Request-ID"), " ")
}
