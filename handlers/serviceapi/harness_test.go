package serviceapi_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/app"
	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/redact/redacttest"
	"github.com/modulehub/simpleconnect/seal"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/store/storetest"
	"github.com/modulehub/simpleconnect/verify"
)

const (
	serviceToken    = "service-token-current-0001"
	oldServiceToken = "service-token-previous-001"
	adminToken      = "admin-token-current-00001"
	moduleSecret    = "module-secret-0001"
)

// env is the service as app.New builds it (router, error table, store,
// CRM client, pacer, metrics) on a Redis of storetest, against a fake CRM.
// Each instance is a replica: several share the Redis.
type env struct {
	t       testing.TB
	cfg     config.Config
	fake    *crmtest.Fake
	backend *storetest.Backend
	apps    []*app.App
	srvs    []*httptest.Server
	logs    *redacttest.Log
	secrets []string
	opts    app.Options
}

type envOption func(*config.Config, *app.Options)

func withoutServiceTokens() envOption {
	return func(c *config.Config, _ *app.Options) { c.ServiceTokens = nil }
}

func withRate(perSecond int, maxWait time.Duration) envOption {
	return func(c *config.Config, o *app.Options) { c.CRMRatePerSecond, o.ProxyMaxWait = perSecond, maxWait }
}

// redisURL names the backend's Redis for REDIS_URL; a Cluster is not one
// URL, so those tests use the other two.
func redisURL(t testing.TB, b *storetest.Backend) string {
	switch b.Name {
	case "miniredis":
		return "redis://" + b.MR.Addr()
	case "redis":
		return os.Getenv("REDIS_URL")
	}
	t.Skip("a Redis Cluster is not a REDIS_URL; the store's own tests cover it")
	return ""
}

// eachRedis runs fn on miniredis, and on the real Redis when REDIS_URL is
// set.
func eachRedis(t *testing.T, fn func(t *testing.T, b *storetest.Backend)) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		if b.Name == "cluster" {
			t.Skip("a Redis Cluster is not a REDIS_URL; the store's own tests cover it")
		}
		fn(t, b)
	})
}

// newEnv starts one instance; more come from env.replica.
func newEnv(t testing.TB, b *storetest.Backend, fakeOpts []crmtest.Option, opts ...envOption) *env {
	t.Helper()
	e := &env{t: t, backend: b, logs: &redacttest.Log{}, fake: crmtest.New(t, fakeOpts...)}
	e.cfg = config.Config{
		ListenAddr: "127.0.0.1:0", PublicURL: "http://module.test", ModuleCode: "demo",
		ModuleSecrets: []redact.Secret{moduleSecret}, ModuleScopes: []string{"integration_read", "integration_write"},
		RedisURL: redact.Secret(redisURL(t, b)), RedisKeyPrefix: b.Prefix, EncryptionKeys: config.EncryptionKeys{seal.NewRandomKey()},
		CRMAllowInsecure: true, CRMTimeout: 2 * time.Second, SessionTTL: time.Hour, ShutdownTimeout: time.Second,
		LogFormat: "json", AdminTokens: []redact.Secret{adminToken},
		ServiceTokens: []redact.Secret{serviceToken, oldServiceToken},
	}.WithDefaults()
	for _, opt := range opts {
		opt(&e.cfg, &e.opts)
	}
	require.NoError(t, e.cfg.Validate())
	e.secrets = []string{serviceToken, oldServiceToken, adminToken, moduleSecret}
	e.replica()
	t.Cleanup(func() { redacttest.AssertAbsent(t, e.logs.String(), e.secrets...) })
	return e
}

// replica starts one more instance of the service on the same Redis.
func (e *env) replica() *httptest.Server {
	e.t.Helper()
	log := app.NewLogger(e.logs, "json", slog.LevelDebug)
	a, err := app.New(e.t.Context(), e.cfg, log, e.opts)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = a.Close() })
	srv := httptest.NewServer(a.Server.Handler)
	e.t.Cleanup(srv.Close)
	e.apps = append(e.apps, a)
	e.srvs = append(e.srvs, srv)
	return srv
}

func (e *env) store() *store.Redis { return e.apps[0].Store }

// connect registers a shop with apiKey through POST /register, as the CRM
// does; the fake CRM accepts it unless scripted otherwise.
func (e *env) connect(apiKey string) store.Account {
	e.t.Helper()
	e.secrets = append(e.secrets, apiKey)
	body, _ := json.Marshal(map[string]string{
		"apiKey": apiKey, "systemUrl": e.fake.URL, "token": verify.Sign(moduleSecret, redact.Secret(apiKey)),
	})
	resp, err := http.PostForm(e.srvs[0].URL+"/register", url.Values{"register": {string(body)}})
	require.NoError(e.t, err)
	_ = resp.Body.Close()
	acc, err := e.store().FindBySystemURL(e.t.Context(), e.fake.URL)
	require.NoError(e.t, err, "the register left an account")
	if cid := acc.ClientID.Reveal(); cid != "" {
		e.secrets = append(e.secrets, cid)
	}
	return acc
}

type reply struct {
	*http.Response
	body string
}

// problem decodes a problem reply and returns its code.
func (r reply) problem(t *testing.T, status int) string {
	t.Helper()
	require.Equal(t, status, r.StatusCode, r.body)
	require.Contains(t, r.Header.Get("Content-Type"), "application/json")
	var p struct {
		Error struct {
			Status  int    `json:"status"`
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.body), &p), r.body)
	assert.Equal(t, status, p.Error.Status)
	assert.NotEmpty(t, p.Error.Message)
	return p.Error.Code
}

// call sends a request to instance i; rawPath is sent as written (no
// cleaning), so escapes reach the server as an attacker would send them.
func (e *env) call(i int, method, rawPath, token string, body io.Reader, header http.Header) reply {
	e.t.Helper()
	u, err := url.Parse(e.srvs[i].URL + rawPath)
	require.NoError(e.t, err)
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.srvs[i].URL, body)
	require.NoError(e.t, err)
	req.URL = u
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return reply{resp, string(b)}
}

func (e *env) get(path, token string) reply {
	e.t.Helper()
	return e.call(0, http.MethodGet, path, token, nil, nil)
}

// assertNoKeyIn checks that no credential the test used is in text.
func (e *env) assertNoKeyIn(text string, except ...string) {
	e.t.Helper()
	for _, s := range e.secrets {
		if !slices.Contains(except, s) && s != "" {
			assert.NotContains(e.t, text, s)
		}
	}
}

// metric returns the value of one series of /metrics, "" when absent.
func (e *env) metric(series string) string {
	e.t.Helper()
	r := e.get("/metrics", "")
	for _, line := range strings.Split(r.body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}
