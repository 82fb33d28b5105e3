// Package app builds the service from its Config: the store, the CRM
// client, the connect service and its sweeper, metrics, the CRM domain
// lists, the two limits (failures per address, attempts per shop and key),
// the handlers and the http.Server with its timeouts. main.run and the load tool (cmd/loadtest) both build it here, so
// what is measured is what runs.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
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
	"github.com/modulehub/simpleconnect/tokens"
)

// Options are what a caller other than main may change, to measure it.
type Options struct {
	// Resolver resolves CRM host names; nil: the system's.
	Resolver *net.Resolver
	// RedisHooks are added to the store's client after the metrics hook.
	RedisHooks []redis.Hook
	// Wrap, when set, wraps the HTTP handler.
	Wrap func(http.Handler) http.Handler
	// ProxyMaxWait bounds a proxied call's wait for its turn; 0:
	// ProxyMaxWait (serviceapi.go).
	ProxyMaxWait time.Duration
}

// App is the built service, not yet serving.
type App struct {
	Config  config.Config
	Log     *slog.Logger
	Store   *store.Redis
	Metrics *metrics.Metrics
	Server  *http.Server

	connector *connect.Service
	domains   *domains.List
}

// New builds the service. The caller closes it.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, o Options) (*App, error) {
	schema, err := settings.Load(cfg.ModuleSettingsFile) // Validate read it too; this is the copy the pages use
	if err != nil {
		return nil, fmt.Errorf("config: MODULE_SETTINGS_FILE: %w", err)
	}
	accounts, err := store.Open(ctx, store.Options{
		URL: cfg.RedisURL, ClusterAddrs: cfg.RedisClusterAddrs,
		SentinelMaster: cfg.RedisSentinelMaster, SentinelAddrs: cfg.RedisSentinelAddrs, Password: cfg.RedisPassword,
		Prefix: cfg.RedisKeyPrefix, EncryptionKeys: cfg.EncryptionKeys, Log: log,
		// A lease outlives any exchange held under it: a key check and an
		// edit at full CRM_TIMEOUT each, with room to spare.
		LeaseTTL:   2*cfg.CRMTimeout + 10*time.Second,
		RetryAfter: max(2*time.Minute, 3*cfg.CRMTimeout), // longer than any register in flight
	})
	if err != nil {
		return nil, err
	}
	m := metrics.New()
	accounts.SetKeyCheckInterval(cfg.KeyCheckInterval)
	accounts.Client().AddHook(m.RedisHook())
	for _, h := range o.RedisHooks {
		accounts.Client().AddHook(h)
	}

	crmClient := crm.New(crm.Options{
		Timeout: cfg.CRMTimeout, AllowInsecure: cfg.CRMAllowInsecure, AllowedPorts: cfg.CRMAllowedPorts,
		UserAgent: "simpleconnect/" + cfg.ModuleCode, Resolver: o.Resolver,
		OnAttempt: func(a crm.Attempt) { m.CRMAttempt(a.Op, a.Status, a.Retry, a.Duration) },
	})
	connector := connect.New(crmClient, accounts, connect.Module{
		Code: cfg.ModuleCode, IntegrationCode: cfg.ModuleIntegrationCode, Name: cfg.ModuleName,
		Logo: cfg.LogoURL(), BaseURL: cfg.PublicURLFor(""), Scopes: cfg.ModuleScopes,
	}, log)
	connector.OnSweep = func(r connect.SweepResult) {
		m.Sweep(map[string]int{
			"completed": r.Completed, "synced": r.Synced, "aborted": r.Aborted, "abandoned": r.Abandoned,
			"retrying": r.Retrying, "skipped": r.Skipped, "unreadable": r.Unreadable,
		})
		if counts, err := accounts.SealedCounts(context.Background()); err == nil {
			m.SealedAccounts(counts)
		}
	}
	if counts, err := accounts.SealedCounts(ctx); err == nil {
		m.SealedAccounts(counts)
	}

	a := &App{Config: cfg, Log: log, Store: accounts, Metrics: m, connector: connector}
	addresses := handlers.AddressPolicy(cfg)
	if len(cfg.CRMDomainsURLs) > 0 {
		a.domains = domains.New(cfg.CRMDomainsURLs, 10*time.Second, log)
		a.domains.OnRefresh = m.DomainRefresh
		addresses.ExtraHosts = a.domains.Hosts
	}
	failures, attempts := Limits(cfg, accounts.Client())
	pacer := ShopPacer(cfg, accounts, o.ProxyMaxWait)
	connector.SetPacer(pacer)
	issuer, err := tokenIssuer(cfg, log)
	if err != nil {
		_ = accounts.Close()
		return nil, err
	}
	var handler http.Handler = handlers.New(handlers.Deps{
		Config: cfg, Log: log, Connector: connector, Accounts: accounts, Sessions: accounts, Store: accounts, Sealing: accounts, Tokens: issuer,
		Failures: failures, Attempts: attempts, IPExtractor: handlers.IPExtractor(cfg.TrustedProxies),
		Addresses: &addresses, Metrics: m, Settings: schema,
		ServiceAPI: ServiceAPI(cfg, log, accounts, crmClient, m, issuer, pacer),
	})
	if o.Wrap != nil {
		handler = o.Wrap(handler)
	}
	a.Server = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      cfg.CRMTimeout + 15*time.Second, // a register waits for the CRM
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return a, nil
}

// tokenIssuer signs the shop's identity for the module's apps with
// TOKEN_SIGNING_KEY; without one, the embedded store (development) gets an
// ephemeral key and a real deployment none (the token routes answer 404).
func tokenIssuer(cfg config.Config, log *slog.Logger) (*tokens.Issuer, error) {
	seeds := [][]byte(cfg.TokenSigningKeys)
	if len(seeds) == 0 {
		if !cfg.UsesEmbeddedStore() {
			return nil, nil
		}
		seeds = [][]byte{tokens.NewSeed()}
		log.Warn("TOKEN_SIGNING_KEY is empty: tokens are signed with an ephemeral key (development only; they stop verifying at restart)")
	}
	issuer, err := tokens.NewIssuer(seeds, cfg.PublicURL, cfg.ModuleCode, 0)
	if err != nil {
		return nil, fmt.Errorf("config: TOKEN_SIGNING_KEY: %w", err)
	}
	return issuer, nil
}

// Limits builds the two limits the config asks for, on rdb (nil when a
// limit is 0, off): the failure budget per client address and the bound per
// (shop, API key) pair (handlers/limits.go says why these two).
func Limits(cfg config.Config, rdb redis.UniversalClient) (handlers.FailureBudget, handlers.AttemptBudget) {
	var (
		failures handlers.FailureBudget
		attempts handlers.AttemptBudget
	)
	if cfg.FailedRequestsPerMinute > 0 {
		failures = ratelimit.NewFailures(rdb, cfg.RedisKeyPrefix, cfg.FailedRequestsPerMinute)
	}
	if cfg.ShopKeyAttemptsPerMinute > 0 {
		attempts = ratelimit.NewAttempts(rdb, cfg.RedisKeyPrefix, cfg.ShopKeyAttemptsPerMinute, cfg.CRMTimeout+time.Second)
	}
	return failures, attempts
}

// Serve serves on ln, with the sweeper and the domain list refresher
// running, until ctx ends; then it stops accepting, lets requests in flight
// finish within SHUTDOWN_TIMEOUT and returns.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	background, stop := context.WithCancel(ctx)
	defer stop()
	go a.connector.RunSweeper(background, time.Minute)
	go a.connector.RunKeyChecks(background, a.Store, a.Config.KeyCheckInterval, a.Metrics.KeyChecks)
	if a.domains != nil {
		go a.domains.Run(background, a.Config.CRMDomainsRefresh) // never blocks a register: the built-in list applies meanwhile
	}

	drained := make(chan error, 1)
	go func() {
		<-ctx.Done()
		// Logged here, synchronously, before Shutdown starts: a hook given
		// to RegisterOnShutdown runs in a goroutine of its own and printed
		// after "stopped", before it, or not at all.
		a.Log.Info("shutting down: finishing requests in flight", "timeout", a.Config.ShutdownTimeout.String())
		sctx, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownTimeout)
		defer cancel()
		drained <- a.Server.Shutdown(sctx)
	}()
	if err := a.Server.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	// Serve returns as soon as Shutdown starts: wait for in-flight requests.
	if err := <-drained; err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// Close closes the store (and stops the embedded Redis).
func (a *App) Close() error { return a.Store.Close() }

// NewLogger builds the one logger (JSON when format is "json", else text),
// with credentials redacted by name as a backstop to the redact.Secret type.
func NewLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: redact.ReplaceAttr}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
