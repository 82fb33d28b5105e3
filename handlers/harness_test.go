package handlers_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/app"
	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/connect"
	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/handlers"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/redact/redacttest"
	"github.com/modulehub/simpleconnect/seal"
	"github.com/modulehub/simpleconnect/settings"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/tokens"
	"github.com/modulehub/simpleconnect/verify"
)

const (
	testSecret    = "test-secret"
	oldTestSecret = "old-test-secret"
)

// harness is the real server (router, middleware, error handler, connect
// service, CRM client, store on miniredis) against a fake CRM.
type harness struct {
	t     *testing.T
	cfg   config.Config
	fake  *crmtest.Fake
	mr    *miniredis.Miniredis
	store *store.Redis
	srv   *httptest.Server
	logs  *redacttest.Log
	// secrets lists every credential the test used; none may appear in a
	// reply or a log line.
	secrets []string
	// pageSecrets belong in their own page (a session's CSRF token) but
	// never in a log line.
	pageSecrets []string
	mu          sync.Mutex // guards secrets
}

type harnessOption func(*config.Config)

func withCRMTimeout(d time.Duration) harnessOption {
	return func(c *config.Config) { c.CRMTimeout = d }
}
func withPublicURL(u string) harnessOption { return func(c *config.Config) { c.PublicURL = u } }
func withSettingsFile(path string) harnessOption {
	return func(c *config.Config) { c.ModuleSettingsFile = path }
}
func withTokenKey(seed []byte) harnessOption {
	return func(c *config.Config) { c.TokenSigningKeys = config.SigningKeys{seed} }
}
func withAppURL(u string) harnessOption { return func(c *config.Config) { c.ModuleAppURL = u } }

// withTrustedProxies sets TRUSTED_PROXIES; the server then gets the client
// address extractor the app builds from it (without, Deps leaves it nil
// and handlers.New must fall back to the peer on its own).
func withTrustedProxies(cidrs ...string) harnessOption {
	return func(c *config.Config) { c.TrustedProxies = cidrs }
}
func withAdminTokens(tokens ...redact.Secret) harnessOption {
	return func(c *config.Config) { c.AdminTokens = tokens }
}

// withLimits turns the two limits on with their defaults, as an unset
// FAILED_REQUESTS_PER_MINUTE and SHOP_KEY_ATTEMPTS_PER_MINUTE give (other
// tests leave them off: they replay registers on purpose).
func withLimits() harnessOption {
	return func(c *config.Config) {
		c.FailedRequestsPerMinute = config.DefaultFailedRequestsPerMinute
		c.ShopKeyAttemptsPerMinute = config.DefaultShopKeyAttemptsPerMinute
	}
}

// shopsSuffix names as many shops as a test wants, every one answered by
// the harness's fake CRM: shop-1.shops.test resolves to 127.0.0.1 for the
// CRM client (crmtest.LoopbackResolver).
const shopsSuffix = "shops.test"

// shopURL is shop n's systemUrl: its own host, the fake CRM's port.
func (h *harness) shopURL(n int) string {
	u, err := url.Parse(h.fake.URL)
	require.NoError(h.t, err)
	return fmt.Sprintf("http://shop-%d.%s:%s", n, shopsSuffix, u.Port())
}

func testConfig() config.Config {
	return config.Config{
		ListenAddr: "127.0.0.1:0", PublicURL: "http://module.test", ModuleCode: "demo",
		ModuleName: "Demo module", ModuleSecrets: []redact.Secret{testSecret, oldTestSecret},
		ModuleScopes: []string{"integration_read", "integration_write"}, RedisKeyPrefix: "test",
		// A generous CRM deadline: a loaded 2-CPU machine running -race must
		// never turn a loopback call into a timeout; tests of timeouts set
		// their own (withCRMTimeout).
		CRMAllowInsecure: true, CRMTimeout: 10 * time.Second, SessionTTL: time.Hour,
		ShutdownTimeout: time.Second, LogFormat: "text",
		// The fake CRM listens on loopback: insecure mode allows its http and
		// port, the allow list its address (and localhost, a second name for
		// the same CRM).
		CRMAllowedHosts: append(slices.Clone(config.DefaultCRMHosts), "127.0.0.1", "localhost", shopsSuffix),
	}.WithDefaults()
}

func newHarness(t *testing.T, fakeOpts []crmtest.Option, opts ...harnessOption) *harness {
	t.Helper()
	cfg := testConfig()
	for _, o := range opts {
		o(&cfg)
	}
	require.NoError(t, cfg.Validate())
	h := &harness{t: t, cfg: cfg, logs: &redacttest.Log{}, secrets: []string{testSecret, oldTestSecret}}
	h.fake = crmtest.New(t, fakeOpts...)
	h.mr = miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: h.mr.Addr()})
	var err error
	h.store, err = store.New(rdb, "test", seal.NewRandomKey())
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.store.Close() })

	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: redact.ReplaceAttr}))
	client := crm.New(crm.Options{
		Timeout: cfg.CRMTimeout, AllowInsecure: cfg.CRMAllowInsecure, AllowedPorts: cfg.CRMAllowedPorts, RetryWait: time.Millisecond, RetryMaxWait: 5 * time.Millisecond,
		Resolver: crmtest.LoopbackResolver(shopsSuffix),
	})
	connector := connect.New(client, h.store, connect.Module{
		Code: cfg.ModuleCode, IntegrationCode: cfg.ModuleIntegrationCode, Name: cfg.ModuleName,
		Logo: cfg.LogoURL(), BaseURL: cfg.PublicURLFor(""), Scopes: cfg.ModuleScopes,
	}, log)
	schema, err := settings.Load(cfg.ModuleSettingsFile)
	require.NoError(t, err)
	var issuer *tokens.Issuer
	if len(cfg.TokenSigningKeys) > 0 {
		issuer, err = tokens.NewIssuer(cfg.TokenSigningKeys, cfg.PublicURL, cfg.ModuleCode, 0)
		require.NoError(t, err)
	}
	addresses := handlers.AddressPolicy(cfg)
	addresses.MoveHosts = []string{"localhost"}             // the fake CRM's "cloud": moves to it are followed
	failures, attempts := app.Limits(cfg, h.store.Client()) // as the service builds them; off unless withLimits
	var clientAddress echo.IPExtractor
	if len(cfg.TrustedProxies) > 0 {
		clientAddress = handlers.IPExtractor(cfg.TrustedProxies)
	}
	h.srv = httptest.NewServer(handlers.New(handlers.Deps{
		Config: cfg, Log: log, Connector: connector, Accounts: h.store, Sessions: h.store, Store: h.store,
		Sealing: h.store, Settings: schema, Addresses: &addresses, Tokens: issuer, Failures: failures, Attempts: attempts,
		IPExtractor: clientAddress,
	}))
	t.Cleanup(h.srv.Close)
	t.Cleanup(h.assertNoSecretsLogged)
	return h
}

// assertNoSecretsLogged runs after every test: no credential the test used
// reached a log line.
func (h *harness) assertNoSecretsLogged() {
	redacttest.AssertAbsent(h.t, h.logs.String(), append(h.known(), h.pageSecrets...)...)
}

// known is every credential remembered so far.
func (h *harness) known() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.secrets)
}

// remember registers a credential that must never leak (safe from the
// goroutines a test starts).
func (h *harness) remember(secrets ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.secrets = append(h.secrets, secrets...)
}

// rememberForLogs registers a value that pages show but logs never do.
func (h *harness) rememberForLogs(secrets ...string) {
	h.pageSecrets = append(h.pageSecrets, secrets...)
}

// client does not follow redirects, so tests see the 303 itself.
func (h *harness) client() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (h *harness) do(req *http.Request) (*http.Response, string) {
	h.t.Helper()
	resp, err := h.client().Do(req)
	require.NoError(h.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(h.t, err)
	body := string(b)
	for _, s := range h.known() {
		if s != "" {
			assert.NotContains(h.t, body, s, "a credential reached a reply")
			for _, v := range resp.Header.Values("Location") {
				assert.NotContains(h.t, v, s)
			}
		}
	}
	return resp, body
}

func (h *harness) postForm(path string, form url.Values, cookies ...*http.Cookie) (*http.Response, string) {
	return h.postRaw(path, "application/x-www-form-urlencoded", form.Encode(), cookies...)
}

func (h *harness) postRaw(path, contentType, body string, cookies ...*http.Cookie) (*http.Response, string) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+path, strings.NewReader(body))
	require.NoError(h.t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	return h.do(req)
}

func (h *harness) get(path string, cookies ...*http.Cookie) (*http.Response, string) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.srv.URL+path, nil)
	require.NoError(h.t, err)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	return h.do(req)
}

// webhookReply is the CRM-facing reply shape.
type webhookReply struct {
	Success    bool   `json:"success"`
	ErrorMsg   string `json:"errorMsg"`
	AccountURL string `json:"accountUrl"`
}

func decodeWebhook(t *testing.T, resp *http.Response, body string) webhookReply {
	t.Helper()
	require.Equal(t, http.StatusOK, resp.StatusCode, "the CRM's webhooks always answer 200; body: %s", body)
	require.Contains(t, resp.Header.Get("Content-Type"), "application/json")
	var r webhookReply
	require.NoError(t, json.Unmarshal([]byte(body), &r), body)
	if !r.Success {
		require.NotEmpty(t, r.ErrorMsg, "a failure must tell the owner why")
	}
	return r
}

// register sends a register signed like the CRM does (JSON form).
func (h *harness) register(apiKey, systemURL string) webhookReply {
	h.t.Helper()
	return h.registerSigned(apiKey, systemURL, verify.Sign(testSecret, redact.Secret(apiKey)))
}

func (h *harness) registerSigned(apiKey, systemURL, token string) webhookReply {
	h.t.Helper()
	_, r := h.postRegisterWith(apiKey, systemURL, token, nil)
	return r
}

// postRegisterWith sends a register as the CRM does (JSON in the form's
// "register" field), with headers of the caller's (set when not empty),
// and returns the reply with its headers. The key and token are
// remembered: they must reach no reply or log.
func (h *harness) postRegisterWith(apiKey, systemURL, token string, headers map[string]string) (*http.Response, webhookReply) {
	h.t.Helper()
	h.remember(apiKey, token)
	body, err := json.Marshal(map[string]string{"apiKey": apiKey, "systemUrl": systemURL, "token": token})
	require.NoError(h.t, err)
	set := map[string]string{}
	for k, v := range headers {
		if v != "" {
			set[k] = v
		}
	}
	resp, raw := h.postFormFrom("/register", url.Values{"register": {string(body)}}, set)
	return resp, decodeWebhook(h.t, resp, raw)
}

// registerFixture replays a recorded register body from testdata/register.
func (h *harness) registerFixture(name string) webhookReply {
	h.t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "register", name))
	require.NoError(h.t, err)
	body := strings.ReplaceAll(strings.TrimSpace(string(raw)), "%7B%7BSYSTEM_URL%7D%7D", url.QueryEscape(h.fake.URL))
	form, err := url.ParseQuery(body)
	require.NoError(h.t, err)
	if v := form.Get("register"); v != "" {
		var in map[string]string
		require.NoError(h.t, json.Unmarshal([]byte(v), &in))
		h.remember(in["apiKey"], in["token"])
	} else {
		h.remember(form.Get("register[apiKey]"), form.Get("register[token]"))
	}
	resp, out := h.postRaw("/register", "application/x-www-form-urlencoded", body)
	return decodeWebhook(h.t, resp, out)
}

// login posts a clientId to /account like the CRM's browser redirect.
func (h *harness) login(clientID string, cookies ...*http.Cookie) (*http.Response, *http.Cookie) {
	h.t.Helper()
	h.remember(clientID)
	resp, _ := h.postForm("/account", url.Values{"clientId": {clientID}}, cookies...)
	for _, c := range resp.Cookies() {
		if strings.HasSuffix(c.Name, "session") {
			h.remember(c.Value)
			return resp, c
		}
	}
	return resp, nil
}

// connected registers a shop and returns its stored account.
func (h *harness) connected(apiKey string) store.Account {
	h.t.Helper()
	r := h.register(apiKey, h.fake.URL)
	require.True(h.t, r.Success, r.ErrorMsg)
	acc, err := h.store.FindBySystemURL(h.t.Context(), h.fake.URL)
	require.NoError(h.t, err)
	h.remember(acc.ClientID.Reveal())
	return acc
}
