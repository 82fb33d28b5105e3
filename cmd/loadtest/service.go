package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/connect"
	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/handlers"
	"github.com/modulehub/simpleconnect/metrics"
	"github.com/modulehub/simpleconnect/ratelimit"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/seal"
	"github.com/modulehub/simpleconnect/settings"
	"github.com/modulehub/simpleconnect/store"
)

// service is the real service running in this process, wired as main.run
// wires it (store, metrics, CRM client, connect service, rate limiter,
// handlers, http.Server settings, sweeper; no domain list: none is set).
// What differs is only there to measure it: the CRM client resolves shop
// hosts with loopbackResolver, /register requests carry a crmTrace (an
// httptrace.ClientTrace and a Redis hook) so the CRM's share of each can be
// taken out, and the JSON log is formatted but not written unless -log. Two differences, both needed to measure it: the CRM client
// resolves shop hosts with loopbackResolver, and register requests carry an
// httptrace.ClientTrace so the CRM's share of each can be taken out.
type service struct {
	URL      string
	Store    *store.Redis
	Embedded bool
	Prefix   string // of every Redis key of this run
	Secret   string // the module secret registers are signed with
	// StartedIn is the time from the start of startService to the first
	// 200 from /readyz.
	StartedIn time.Duration

	srv    *http.Server
	cancel context.CancelFunc
	traces sync.Map // X-Request-ID → *crmTrace
}

type serviceOptions struct {
	RedisURL  string // empty: the embedded store
	Prefix    string
	Secret    string
	RateLimit int // per minute per client and route; high, so it is paid but never refuses
	Resolver  *net.Resolver
	Log       io.Writer // where the JSON request log goes (formatted either way)
}

func startService(ctx context.Context, o serviceOptions) (*service, error) {
	start := time.Now()
	cfg := config.Config{
		ListenAddr: "127.0.0.1:0", PublicURL: "http://module.loadtest.localhost", ModuleCode: "loadtest",
		ModuleSecrets: []redact.Secret{redact.Secret(o.Secret)}, ModuleScopes: []string{"integration_read", "integration_write"},
		RedisURL: redact.Secret(o.RedisURL), RedisKeyPrefix: o.Prefix, CRMAllowInsecure: true, CRMTimeout: 10 * time.Second,
		RateLimitPerMinute: o.RateLimit, SessionTTL: 12 * time.Hour, ShutdownTimeout: 5 * time.Second,
		LogFormat: "json", LogLevel: slog.LevelInfo,
	}.WithDefaults()
	if o.RedisURL != "" {
		cfg.EncryptionKeys = config.EncryptionKeys{seal.NewRandomKey()}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	schema, err := settings.Load(cfg.ModuleSettingsFile)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewJSONHandler(o.Log, &slog.HandlerOptions{Level: cfg.LogLevel, ReplaceAttr: redact.ReplaceAttr}))

	// From here on, as main.run.
	accounts, err := store.Open(ctx, store.Options{
		URL: cfg.RedisURL, Prefix: cfg.RedisKeyPrefix, EncryptionKeys: cfg.EncryptionKeys, Log: log,
	})
	if err != nil {
		return nil, err
	}
	m := metrics.New()
	accounts.Client().AddHook(m.RedisHook())
	accounts.Client().AddHook(redisTimer{}) // ours, to break registers down
	crmClient := crm.New(crm.Options{
		Timeout: cfg.CRMTimeout, AllowInsecure: cfg.CRMAllowInsecure, AllowedPorts: cfg.CRMAllowedPorts,
		UserAgent: "simpleconnect/" + cfg.ModuleCode, Resolver: o.Resolver,
		OnAttempt: func(a crm.Attempt) { m.CRMAttempt(a.Op, a.Status, a.Retry, a.Duration) },
	})
	connector := connect.New(crmClient, accounts, connect.Module{
		Code: cfg.ModuleCode, IntegrationCode: cfg.ModuleIntegrationCode, Name: cfg.ModuleName,
		Logo: cfg.LogoURL(), BaseURL: cfg.PublicURLFor(""), Scopes: cfg.ModuleScopes,
	}, log)
	connector.OnSweep = func(r connect.SweepResult) { m.Sweep(r.Completed, r.Aborted, r.Retrying) }
	addresses := handlers.AddressPolicy(cfg)
	var limiter handlers.RateLimiter
	if cfg.RateLimitPerMinute > 0 {
		limiter = ratelimit.New(accounts.Client(), cfg.RedisKeyPrefix, cfg.RateLimitPerMinute)
	}
	s := &service{Store: accounts, Embedded: o.RedisURL == "", Prefix: o.Prefix, Secret: o.Secret}
	e := handlers.New(handlers.Deps{
		Config: cfg, Log: log, Connector: connector, Accounts: accounts, Sessions: accounts, Store: accounts,
		Limiter: limiter, IPExtractor: handlers.IPExtractor(cfg.TrustedProxies), Addresses: &addresses, Metrics: m,
		Settings: schema,
	})
	s.srv = &http.Server{
		Handler:           s.traced(e),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      cfg.CRMTimeout + 15*time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		_ = accounts.Close()
		return nil, fmt.Errorf("listen %s: %w", cfg.ListenAddr, err)
	}
	sweepCtx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	go connector.RunSweeper(sweepCtx, time.Minute, max(2*time.Minute, 3*cfg.CRMTimeout), 24*time.Hour)
	go func() { _ = s.srv.Serve(ln) }()
	s.URL = "http://" + ln.Addr().String()

	if err := waitReady(ctx, s.URL+"/readyz", 5*time.Second); err != nil {
		s.Close()
		return nil, err
	}
	s.StartedIn = time.Since(start)
	return s, nil
}

// Close stops the server and the store, as main.run does on SIGTERM.
func (s *service) Close() {
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	_ = s.Store.Close()
}

// traced gives every /register request an httptrace.ClientTrace in its
// context; the CRM client's requests inherit it, so crmTrace sees each HTTP
// exchange with the CRM. It is kept under the caller's X-Request-ID (the
// service echoes it), which the load generator reads back. Other paths go
// straight through.
func (s *service) traced(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/register" {
			next.ServeHTTP(w, r)
			return
		}
		t := &crmTrace{}
		ctx := context.WithValue(httptrace.WithClientTrace(r.Context(), t.hooks()), traceKey{}, t)
		start := time.Now()
		next.ServeHTTP(w, r.WithContext(ctx))
		t.mu.Lock()
		t.handler = time.Since(start)
		t.mu.Unlock()
		// Stored before ServeHTTP returns to net/http, which only then
		// flushes the reply: the client finds it once it has the reply.
		s.traces.Store(r.Header.Get("X-Request-ID"), t)
	})
}

// takeTrace returns and forgets the trace of one request.
func (s *service) takeTrace(requestID string) (*crmTrace, bool) {
	v, ok := s.traces.LoadAndDelete(requestID)
	if !ok {
		return nil, false
	}
	return v.(*crmTrace), true
}

// crmTrace times one register inside the service. Over every HTTP
// exchange with the CRM it sums:
//   - crm: from our request fully written (WroteRequest) to the first
//     byte of the CRM's reply (GotFirstResponseByte): the CRM's own
//     handling plus loopback transit. This is what is subtracted.
//   - conn: from asking the transport for a connection (GetConn) to having
//     one (GotConn): DNS and TCP connect for a new shop, ~0 on a reused
//     connection. Counted as ours.
//
// It also takes the handler's wall time and, through redisTimer, the time
// and number of Redis round trips, to break our overhead down.
type crmTrace struct {
	mu        sync.Mutex
	exchanges int
	untimed   int // exchanges whose CRM time could not be taken (counted as ours)
	crm, conn time.Duration
	getConn   time.Time
	wrote     time.Time

	handler    time.Duration // inside the service's http.Handler
	redis      time.Duration // waiting on Redis commands and pipelines
	redisTrips int
}

type traceKey struct{}

// redisTimer is a go-redis hook adding each command's or pipeline's wall
// time to the crmTrace of the request it serves, if any.
type redisTimer struct{}

func (redisTimer) DialHook(next redis.DialHook) redis.DialHook { return next }

func (redisTimer) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		addRedis(ctx, time.Since(start))
		return err
	}
}

func (redisTimer) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		addRedis(ctx, time.Since(start))
		return err
	}
}

func addRedis(ctx context.Context, d time.Duration) {
	if t, ok := ctx.Value(traceKey{}).(*crmTrace); ok {
		t.mu.Lock()
		t.redis += d
		t.redisTrips++
		t.mu.Unlock()
	}
}

func (t *crmTrace) hooks() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GetConn: func(string) {
			t.mu.Lock()
			t.getConn, t.wrote = time.Now(), time.Time{} // a new exchange starts
			t.mu.Unlock()
		},
		GotConn: func(httptrace.GotConnInfo) {
			t.mu.Lock()
			t.conn += time.Since(t.getConn)
			t.mu.Unlock()
		},
		WroteRequest: func(httptrace.WroteRequestInfo) {
			t.mu.Lock()
			t.wrote = time.Now()
			t.mu.Unlock()
		},
		GotFirstResponseByte: func() {
			t.mu.Lock()
			t.exchanges++
			if t.wrote.IsZero() { // the reply's first byte came before WroteRequest's callback ran
				t.untimed++
			} else {
				t.crm += time.Since(t.wrote)
			}
			t.wrote = time.Time{}
			t.mu.Unlock()
		},
	}
}

// registerSample is what one measured register took.
type registerSample struct {
	exchanges, untimed, redisTrips int
	crm, conn, handler, redis      time.Duration
}

func (t *crmTrace) sample() registerSample {
	t.mu.Lock()
	defer t.mu.Unlock()
	return registerSample{
		exchanges: t.exchanges, untimed: t.untimed, redisTrips: t.redisTrips,
		crm: t.crm, conn: t.conn, handler: t.handler, redis: t.redis,
	}
}

// waitReady polls url every millisecond until it answers 200.
func waitReady(ctx context.Context, url string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tr := &http.Transport{Proxy: nil}
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: time.Second, Transport: tr}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return errors.New("not ready within " + limit.String())
		case <-time.After(time.Millisecond):
		}
	}
}
