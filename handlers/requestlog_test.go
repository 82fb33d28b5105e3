package handlers_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/handlers"
	"github.com/modulehub/simpleconnect/redact"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// At the default level every webhook and page call has its line; /config
// and the liveness probe, which answer the same thing every time, have none
// (they are counted in the metrics). At debug level they are logged too.
func TestRequestLogLinePerWebhookAndPageNotPerConfig(t *testing.T) {
	for _, tc := range []struct {
		level     slog.Level
		configLog bool
	}{{slog.LevelInfo, false}, {slog.LevelDebug, true}} {
		t.Run(tc.level.String(), func(t *testing.T) {
			var logs lockedBuffer
			log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: tc.level, ReplaceAttr: redact.ReplaceAttr}))
			e := handlers.New(handlers.Deps{Config: testConfig(), Log: log})
			serve := func(req *http.Request) {
				rec := httptest.NewRecorder()
				e.ServeHTTP(rec, req)
				require.NotZero(t, rec.Code)
			}
			serve(httptest.NewRequest(http.MethodGet, "/config", nil))
			serve(httptest.NewRequest(http.MethodGet, "/healthz", nil))
			form := url.Values{"register": {`{"apiKey":"k","systemUrl":"https://shop.retailcrm.ru","token":"bad"}`}}.Encode()
			req := httptest.NewRequest(http.MethodPost, "/register", strings.NewReader(form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			serve(req)
			serve(httptest.NewRequest(http.MethodGet, "/account", nil))

			out := logs.String()
			assert.Contains(t, out, `"route":"/register"`, "a webhook call has its line")
			assert.Contains(t, out, `"route":"/account"`, "a page call has its line")
			assert.Equal(t, tc.configLog, strings.Contains(out, `"route":"/config"`))
			assert.Equal(t, tc.configLog, strings.Contains(out, `"route":"/healthz"`))
		})
	}
}
