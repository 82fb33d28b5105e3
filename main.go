// Command simpleconnect is the service a RetailCRM / Simla.com marketplace
// module runs so that a shop connects it in one click: it answers the CRM's
// configUrl and registerUrl, registers the module in the shop's CRM, keeps
// the account in Redis and shows the module's account page.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/connect"
	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/domains"
	"github.com/modulehub/simpleconnect/handlers"
	"github.com/modulehub/simpleconnect/metrics"
	"github.com/modulehub/simpleconnect/ratelimit"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/settings"
	"github.com/modulehub/simpleconnect/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cfg, err := config.Load()
	if err == nil {
		err = run(ctx, cfg, os.Stderr, func(string) {})
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err) // one line per bad variable, or the step that failed
		os.Exit(1)
	}
}

// run serves until ctx ends, then drains in-flight requests (bounded by
// SHUTDOWN_TIMEOUT) and closes the store. ready receives the address
// listened on, so tests can use 127.0.0.1:0.
func run(ctx context.Context, cfg config.Config, stderr io.Writer, ready func(addr string)) error {
	schema, err := settings.Load(cfg.ModuleSettingsFile) // Validate read it too; this is the copy the pages use
	if err != nil {
		return fmt.Errorf("config: MODULE_SETTINGS_FILE: %w", err)
	}
	log := newLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	redis.SetLogger(redisLog{log}) // go-redis logs through a package-level logger; main owns process-wide state
	if cfg.CRMAllowInsecure {
		log.Warn("CRM_ALLOW_INSECURE is on: http and loopback CRM addresses are accepted and the outbound address guard is off; never use this in production")
	}

	accounts, err := store.Open(ctx, store.Options{
		URL: cfg.RedisURL, ClusterAddrs: cfg.RedisClusterAddrs,
		SentinelMaster: cfg.RedisSentinelMaster, SentinelAddrs: cfg.RedisSentinelAddrs, Password: cfg.RedisPassword,
		Prefix: cfg.RedisKeyPrefix, EncryptionKeys: cfg.EncryptionKeys, Log: log,
	})
	if err != nil {
		return err
	}
	defer accounts.Close()
	m := metrics.New()
	accounts.Client().AddHook(m.RedisHook())

	crmClient := crm.New(crm.Options{
		Timeout: cfg.CRMTimeout, AllowInsecure: cfg.CRMAllowInsecure, AllowedPorts: cfg.CRMAllowedPorts,
		UserAgent: "simpleconnect/" + cfg.ModuleCode,
		OnAttempt: func(a crm.Attempt) { m.CRMAttempt(a.Op, a.Status, a.Retry, a.Duration) },
	})
	connector := connect.New(crmClient, accounts, connect.Module{
		Code: cfg.ModuleCode, IntegrationCode: cfg.ModuleIntegrationCode, Name: cfg.ModuleName,
		Logo: cfg.LogoURL(), BaseURL: cfg.PublicURLFor(""), Scopes: cfg.ModuleScopes,
	}, log)
	connector.OnSweep = func(r connect.SweepResult) { m.Sweep(r.Completed, r.Aborted, r.Retrying) }

	addresses := handlers.AddressPolicy(cfg)
	if len(cfg.CRMDomainsURLs) > 0 {
		list := domains.New(cfg.CRMDomainsURLs, 10*time.Second, log)
		list.OnRefresh = m.DomainRefresh
		addresses.ExtraHosts = list.Hosts
		go list.Run(ctx, cfg.CRMDomainsRefresh) // never blocks start or a register: the built-in list applies meanwhile
	}

	var limiter handlers.RateLimiter
	if cfg.RateLimitPerMinute > 0 {
		limiter = ratelimit.New(accounts.Client(), cfg.RedisKeyPrefix, cfg.RateLimitPerMinute)
	}
	srv := &http.Server{
		Handler: handlers.New(handlers.Deps{
			Config: cfg, Log: log, Connector: connector, Accounts: accounts, Sessions: accounts, Store: accounts,
			Limiter: limiter, IPExtractor: handlers.IPExtractor(cfg.TrustedProxies), Addresses: &addresses, Metrics: m,
			Settings: schema,
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      cfg.CRMTimeout + 15*time.Second, // a register waits for the CRM
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.ListenAddr, err)
	}

	sweepCtx, stopSweeper := context.WithCancel(ctx)
	defer stopSweeper()
	grace := max(2*time.Minute, 3*cfg.CRMTimeout) // longer than any register in flight
	go connector.RunSweeper(sweepCtx, time.Minute, grace, 24*time.Hour)

	log.Info("listening", "addr", ln.Addr().String(), "public_url", cfg.PublicURL, "module", cfg.ModuleCode)
	ready(ln.Addr().String())

	// Shutdown closes the listeners before it runs these: once this line is
	// logged, no new connection is accepted.
	srv.RegisterOnShutdown(func() {
		log.Info("shutting down: finishing requests in flight", "timeout", cfg.ShutdownTimeout.String())
	})
	drained := make(chan error, 1)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		drained <- srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	// Serve returns as soon as Shutdown starts: wait for in-flight requests.
	if err := <-drained; err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// newLogger builds the one logger, with credentials redacted by name as a
// backstop to the redact.Secret type.
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: redact.ReplaceAttr}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// redisLog sends go-redis's own messages (pool dial failures) to our log.
type redisLog struct{ log *slog.Logger }

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	r.log.WarnContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}
