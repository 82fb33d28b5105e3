package handlers_test

import (
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/connect"
	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/handlers"
	"github.com/modulehub/simpleconnect/metrics"
	"github.com/modulehub/simpleconnect/ratelimit"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/seal"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/store/storetest"
)

// benchServer is the real server wired as main.run wires it (store,
// metrics, CRM client, connect service, rate limiter, JSON request log with
// redaction) against a fake CRM. The log is formatted but discarded:
// formatting is ours to pay, the write to stderr is not measured here.
type benchServer struct {
	cfg  config.Config
	e    *echo.Echo
	fake *crmtest.Fake
}

// benchBackends runs fn on every backend storetest knows, each with a
// random key prefix whose keys are deleted afterwards.
func benchBackends(b *testing.B, fn func(b *testing.B, rdb func() redis.UniversalClient, prefix string)) {
	storetest.EachB(b, func(b *testing.B, be *storetest.Backend) { fn(b, be.Dial, be.Prefix) })
}

func newBenchServer(b *testing.B, rdb redis.UniversalClient, prefix string) *benchServer {
	b.Helper()
	cfg := config.Config{
		ListenAddr: "127.0.0.1:0", PublicURL: "https://module.example.com", ModuleCode: "demo",
		ModuleName: "Demo module", ModuleSecrets: []redact.Secret{testSecret},
		ModuleScopes: []string{"integration_read", "integration_write"}, RedisKeyPrefix: prefix,
		CRMAllowInsecure: true, CRMAllowedHosts: []string{"127.0.0.1"}, CRMTimeout: 5 * time.Second, SessionTTL: time.Hour,
		FailedRequestsPerMinute: config.DefaultFailedRequestsPerMinute, ShopKeyAttemptsPerMinute: config.DefaultShopKeyAttemptsPerMinute,
		ShutdownTimeout: time.Second, LogFormat: "json",
	}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	accounts, err := store.New(rdb, prefix, seal.NewRandomKey())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = accounts.Close() })
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{ReplaceAttr: redact.ReplaceAttr}))
	m := metrics.New()
	accounts.Client().AddHook(m.RedisHook())
	client := crm.New(crm.Options{
		Timeout: cfg.CRMTimeout, AllowInsecure: true, UserAgent: "simpleconnect/demo",
		OnAttempt: func(a crm.Attempt) { m.CRMAttempt(a.Op, a.Status, a.Retry, a.Duration) },
	})
	connector := connect.New(client, accounts, connect.Module{
		Code: cfg.ModuleCode, IntegrationCode: cfg.ModuleIntegrationCode, Name: cfg.ModuleName,
		Logo: cfg.LogoURL(), BaseURL: cfg.PublicURLFor(""), Scopes: cfg.ModuleScopes,
	}, log)
	addresses := handlers.AddressPolicy(cfg)
	e := handlers.New(handlers.Deps{
		Config: cfg, Log: log, Connector: connector, Accounts: accounts, Sessions: accounts, Store: accounts,
		Failures: ratelimit.NewFailures(accounts.Client(), prefix, cfg.FailedRequestsPerMinute),
		Attempts: ratelimit.NewAttempts(accounts.Client(), prefix, cfg.ShopKeyAttemptsPerMinute, cfg.CRMTimeout+time.Second), Addresses: &addresses, Metrics: m,
	})
	return &benchServer{cfg: cfg, e: e, fake: crmtest.New(b)}
}

// discardWriter is a ResponseWriter that keeps only the status, so a
// benchmark measures the handler, not a recorder.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header  { return w.h }
func (w *discardWriter) WriteHeader(code int) { w.status = code }
func (w *discardWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}
func (w *discardWriter) reset() { clear(w.h); w.status, w.n = 0, 0 }

func newDiscardWriter() *discardWriter { return &discardWriter{h: http.Header{}} }
