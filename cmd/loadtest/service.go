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

	"github.com/modulehub/simpleconnect/app"
	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/seal"
	"github.com/modulehub/simpleconnect/store"
)

// service is the real service running in this process, built by app.New as
// main.run builds it (store, metrics, CRM client, connect service, rate
// limiter, handlers, http.Server settings, sweeper; no domain list: none is
// set). What differs is only there to measure it: the CRM client resolves
// shop hosts with crmtest.LoopbackResolver, /register requests carry a crmTrace (an
// httptrace.ClientTrace and a Redis hook) so the CRM's share of each can be
// taken out, and the JSON log is formatted but not written unless -log.
type service struct {
	URL      string
	Store    *store.Redis
	Embedded bool
	Prefix   string // of every Redis key of this run
	Secret   string // the module secret registers are signed with
	// StartedIn is the time from the start of startService to the first
	// 200 from /readyz.
	StartedIn time.Duration

	app    *app.App
	cancel context.CancelFunc
	served chan struct{}
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
	log := app.NewLogger(o.Log, cfg.LogFormat, cfg.LogLevel)

	// Built as main.run builds it; only the resolver, a Redis timer and the
	// request tracing are ours, to measure it.
	s := &service{Embedded: o.RedisURL == "", Prefix: o.Prefix, Secret: o.Secret}
	a, err := app.New(ctx, cfg, log, app.Options{
		Resolver: o.Resolver, RedisHooks: []redis.Hook{redisTimer{}}, Wrap: s.traced,
	})
	if err != nil {
		return nil, err
	}
	s.app, s.Store = a, a.Store
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		_ = a.Close()
		return nil, fmt.Errorf("listen %s: %w", cfg.ListenAddr, err)
	}
	serveCtx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.served = make(chan struct{})
	go func() { _ = a.Serve(serveCtx, ln); close(s.served) }()
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
	<-s.served // drained, bounded by SHUTDOWN_TIMEOUT
	_ = s.app.Close()
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
