package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/modulehub/simpleconnect/app"
	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/seal"
	"github.com/modulehub/simpleconnect/verify"
)

// The proxy phase: what the CRM proxy of the service API adds to a call
// of the shop's CRM. The same GET /api/v5/orders goes to the fake CRM (a
// child process) directly, with the key, and through
// /service/api/accounts/{id}/crm/, with a service token, alternately, in
// rounds at the same concurrency. The proxy's share of a call is its
// latency minus the direct one's (both include the fake CRM's own time and
// loopback transit once; the proxy adds a second loopback hop, the token
// check, the account read and its decryption, the shop's turn in Redis,
// and the guarded outbound call). The rate limit is raised
// (-proxy-rate) so that the pacer's Redis call is paid but never waits.
//
// It has its own service instance, configured for it (SERVICE_TOKEN, the
// raised rate), on the same Redis as the other phases, with its own key
// prefix; phaseProxy is the only hook main.go needs.

// proxyOptions are the phase's flags, registered by addProxyFlags.
type proxyOptions struct {
	requests int
	duration time.Duration
	rounds   int
	rate     int
}

var proxyOpts proxyOptions

func addProxyFlags(fs interface {
	IntVar(*int, string, int, string)
	DurationVar(*time.Duration, string, time.Duration, string)
}) {
	fs.IntVar(&proxyOpts.requests, "proxy-requests", 3000, "requests per target per round of the proxy phase")
	fs.DurationVar(&proxyOpts.duration, "proxy-duration", 2*time.Second, "time limit per target per round of the proxy phase")
	fs.IntVar(&proxyOpts.rounds, "proxy-rounds", 6, "rounds of the proxy phase; each drives the CRM directly and through the proxy, in alternating order")
	fs.IntVar(&proxyOpts.rate, "proxy-rate", 1_000_000, "CRM_RATE_PER_SECOND of the proxy phase's service: on, so the pacer's Redis call is paid, but high enough never to wait")
}

func phaseProxy(ctx context.Context, o options, r *report) error {
	fake, err := startFakeCRM(ctx, false, o.logDir)
	if err != nil {
		return err
	}
	defer fake.proc.Stop()
	if err := fake.ensure(ctx, 1); err != nil {
		return err
	}
	shopURL := "http://" + fake.shop(0)

	prefix := "loadtest-proxy-" + randomHex(8)
	token := "loadtest-service-" + randomHex(12)
	secret := "loadtest-secret-" + randomHex(8)
	cfg := config.Config{
		ListenAddr: "127.0.0.1:0", PublicURL: "http://module.loadtest.localhost", ModuleCode: "loadtest",
		ModuleSecrets: []redact.Secret{redact.Secret(secret)}, ModuleScopes: []string{"integration_read", "integration_write"},
		RedisURL: redact.Secret(o.redisURL), RedisKeyPrefix: prefix, CRMAllowInsecure: true, CRMTimeout: 10 * time.Second,
		SessionTTL: time.Hour, ShutdownTimeout: 5 * time.Second, LogFormat: "json", LogLevel: slog.LevelInfo,
		ServiceTokens: []redact.Secret{redact.Secret(token)}, CRMRatePerSecond: proxyOpts.rate,
	}.WithDefaults()
	if o.redisURL != "" {
		cfg.EncryptionKeys = config.EncryptionKeys{seal.NewRandomKey()}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	a, err := app.New(ctx, cfg, app.NewLogger(io.Discard, cfg.LogFormat, cfg.LogLevel), app.Options{})
	if err != nil {
		return err
	}
	defer a.Close()
	if o.redisURL != "" {
		defer func() {
			n, err := deleteKeys(context.Background(), a.Store.Client(), prefix)
			r.progressf("proxy: deleted this phase's %d Redis keys (prefix %s)", n, prefix)
			if err != nil {
				r.progressf("proxy cleanup: %v", err)
			}
		}()
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return err
	}
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() { _ = a.Serve(serveCtx, ln); close(served) }()
	defer func() { stop(); <-served }()
	svcURL := "http://" + ln.Addr().String()
	if err := waitReady(ctx, svcURL+"/readyz", 5*time.Second); err != nil {
		return err
	}

	// One shop, connected as the CRM connects it.
	apiKey := "loadtest-shop-key-" + randomHex(8)
	body, _ := json.Marshal(map[string]string{"apiKey": apiKey, "systemUrl": shopURL, "token": verify.Sign(redact.Secret(secret), redact.Secret(apiKey))})
	resp, err := http.PostForm(svcURL+"/register", url.Values{"register": {string(body)}})
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	acc, err := a.Store.FindBySystemURL(ctx, shopURL)
	if err != nil {
		return fmt.Errorf("the shop did not connect: %w", err)
	}

	client := newClient(o.conc)
	direct := crmGetter(client, shopURL+"/api/v5/orders", "X-API-KEY", apiKey)
	proxied := crmGetter(client, svcURL+"/service/api/accounts/"+acc.ID+"/crm/api/v5/orders", "Authorization", "Bearer "+token)
	// Warm both paths (connections, the account's first read).
	drive(ctx, o.conc, 200, time.Second, direct)
	drive(ctx, o.conc, 200, time.Second, proxied)
	var base, via []run
	for i := range proxyOpts.rounds {
		r.progressf("proxy: round %d/%d", i+1, proxyOpts.rounds)
		first, second := direct, proxied
		if i%2 == 1 {
			first, second = proxied, direct
		}
		a := drive(ctx, o.conc, proxyOpts.requests, proxyOpts.duration, first)
		b := drive(ctx, o.conc, proxyOpts.requests, proxyOpts.duration, second)
		if i%2 == 1 {
			a, b = b, a
		}
		base, via = append(base, a), append(via, b)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	r.proxyResult(o, base, via)
	return nil
}

// crmGetter GETs url with one header set and expects 200 with a body.
func crmGetter(client *http.Client, url, header, value string) func(context.Context, int, int) (time.Duration, error) {
	return func(ctx context.Context, _, _ int) (time.Duration, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set(header, value)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return time.Since(start), err
		}
		n, err := io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		d := time.Since(start)
		if err == nil && (resp.StatusCode != http.StatusOK || n == 0) {
			err = errors.Join(errUnexpected, fmt.Errorf("status %d", resp.StatusCode))
		}
		return d, err
	}
}

func (r *report) proxyResult(o options, base, via []run) {
	fmt.Fprintf(r.out, "\n## CRM proxy: GET /api/v5/orders through /service/api vs the fake CRM directly (%d connections, %d rounds of ≤%d requests or ≤%s each, CRM_RATE_PER_SECOND=%d)\n\n",
		o.conc, proxyOpts.rounds, proxyOpts.requests, proxyOpts.duration, proxyOpts.rate)
	fmt.Fprintln(r.out, "| path | requests | failed | req/s | p50 | p99 | CPU per request |")
	fmt.Fprintln(r.out, "|---|---:|---:|---:|---:|---:|---:|")
	stats := func(runs []run) (all []time.Duration, failed, n int, elapsed, cpu time.Duration) {
		for _, x := range runs {
			all = append(all, x.samples()...)
			failed += x.Failed
			n += x.Done
			elapsed += x.Elapsed
			cpu += x.CPU
		}
		return
	}
	row := func(name string, runs []run) (p50, p99 time.Duration, rps float64) {
		all, failed, n, elapsed, cpu := stats(runs)
		p50, p99, rps = percentile(all, 50), percentile(all, 99), float64(n)/elapsed.Seconds()
		fmt.Fprintf(r.out, "| %s | %d | %d | %.0f | %s | %s | %.1f µs |\n", name, len(all), failed, rps, ms(p50), ms(p99),
			float64(cpu.Nanoseconds())/1000/float64(max(1, n)))
		return
	}
	b50, b99, brps := row("fake CRM directly", base)
	v50, v99, vrps := row("through the proxy", via)
	added50, added99, ratio := v50-b50, v99-b99, vrps/brps
	fmt.Fprintf(r.out, "\nadded by the proxy: p50 %s, p99 %s; throughput proxy/direct %.2f×\n", ms(added50), ms(added99), ratio)
	fmt.Fprintln(r.out, "(CPU is this process: load generator and service; the fake CRM runs in a child process)")
	fmt.Fprintln(r.out, "\n| target | this run | target | met |\n|---|---:|---|---|")
	fmt.Fprintf(r.out, "| CRM proxy: added p99 on loopback | %s | < 1 ms | %s |\n", ms(added99), yes(added99 < time.Millisecond))
	fmt.Fprintf(r.out, "| CRM proxy: throughput vs direct (rate limit raised) | %.2f× | ≥ 0.8× | %s |\n", ratio, yes(ratio >= 0.8))
}
