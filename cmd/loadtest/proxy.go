package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modulehub/simpleconnect/ratelimit"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/seal"
	"github.com/modulehub/simpleconnect/verify"
)

// The proxy phase: what the CRM proxy of the service API adds to a call
// of the shop's CRM. The same GET /api/v5/orders goes, at the same
// concurrency, in rounds whose order rotates, to:
//
//   - the fake CRM (a child process) directly, with the key;
//   - a bare reverse proxy (a child: net/http and httputil.ReverseProxy,
//     a bearer check and the key set; nothing else): what any Go proxy
//     hop costs on this machine;
//   - the same bare proxy making the round trip the issue asks of every
//     call: the account and the shop's turn under a rate limit shared by
//     replicas, read from Redis in one pipeline (the yardstick);
//   - the service, as deployed (its binary, its JSON log written), through
//     /service/api/accounts/{id}/crm/, with a service token.
//
// The rate limit is raised (-proxy-rate) so that the pacer's Redis call is
// paid but never waits. The proxy's share of a call is its latency minus
// the direct one's (both include the fake CRM's time and one loopback
// transit).

// proxyOptions are the phase's flags, registered by addProxyFlags.
type proxyOptions struct {
	requests int
	duration time.Duration
	rounds   int
	rate     int
	crmTime  time.Duration
}

var proxyOpts proxyOptions

func addProxyFlags(fs interface {
	IntVar(*int, string, int, string)
	DurationVar(*time.Duration, string, time.Duration, string)
}) {
	fs.IntVar(&proxyOpts.requests, "proxy-requests", 3000, "requests per target per round of the proxy phase")
	fs.DurationVar(&proxyOpts.duration, "proxy-duration", 2*time.Second, "time limit per target per round of the proxy phase")
	fs.IntVar(&proxyOpts.rounds, "proxy-rounds", 8, "rounds of the proxy phase; each drives every path once, in a rotating order (a multiple of 4 puts each path first equally often)")
	fs.DurationVar(&proxyOpts.crmTime, "proxy-crm-time", 0, "the fake CRM's own time per GET /api/v5/orders in the proxy phase: 0 answers at once (the proxy's cost alone, the issue's targets); a real CRM across the internet takes tens of milliseconds")
	fs.IntVar(&proxyOpts.rate, "proxy-rate", 1_000_000, "CRM_RATE_PER_SECOND of the proxy phase's service (and the yardstick's pacer): on, so the pacer's Redis call is paid, but high enough never to wait")
}

// proxyPath is one way to the shop's CRM, driven in the phase.
type proxyPath struct {
	name string
	get  func(context.Context, int, int) (time.Duration, error)
	proc *child // the proxy's process (its CPU); nil: direct, or in this process
	runs []run
	cpu  []time.Duration // the proxy process's CPU during each run
	rw   []int64         // its read and write system calls during each run
}

func phaseProxy(ctx context.Context, o options, serviceBin string, r *report) error {
	fake, err := startFakeCRM(ctx, false, o.logDir, proxyOpts.crmTime)
	if err != nil {
		return err
	}
	defer fake.proc.Stop()
	if err := fake.ensure(ctx, 1); err != nil {
		return err
	}
	shopURL := "http://" + fake.shop(0)

	redisURL, rdb, closeRedis, err := openRedis(o, r, "the proxy phase's service and the yardstick")
	if err != nil {
		return err
	}
	defer closeRedis()

	prefix := "loadtest-proxy-" + randomHex(8)
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		n, err := deleteKeys(cctx, rdb, prefix)
		r.progressf("proxy: deleted this phase's %d Redis keys (prefix %s)", n, prefix)
		if err != nil {
			r.progressf("proxy cleanup: %v", err)
		}
	}()
	token := "loadtest-service-" + randomHex(12)
	secret := "loadtest-secret-" + randomHex(8)
	env := append(serviceEnv(redisURL, prefix, secret, seal.NewRandomKey()),
		"SERVICE_TOKEN="+token, "CRM_RATE_PER_SECOND="+strconv.Itoa(proxyOpts.rate), "CRM_TIMEOUT=10s")
	var svcURL string
	var svcProc *child
	if o.inProcess {
		s, err := startService(ctx, env, filepath.Join(o.logDir, "proxy-service.log"))
		if err != nil {
			return fmt.Errorf("start the service in process: %w", err)
		}
		defer s.Close()
		svcURL = s.URL
	} else {
		svcProc, err = startChild(ctx, "service", serviceBin, nil, env, filepath.Join(o.logDir, "proxy-service.log"))
		if err != nil {
			return err
		}
		defer svcProc.Stop()
		svcURL = "http://" + svcProc.Addr
	}

	// One shop, connected as the CRM connects it.
	apiKey := "loadtest-shop-key-" + randomHex(8)
	body, _ := json.Marshal(map[string]string{"apiKey": apiKey, "systemUrl": shopURL, "token": verify.Sign(redact.Secret(secret), redact.Secret(apiKey))})
	resp, err := http.PostForm(svcURL+"/register", url.Values{"register": {string(body)}})
	if err != nil {
		return err
	}
	reply, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	var registered struct {
		Success    bool   `json:"success"`
		AccountURL string `json:"accountUrl"`
	}
	if err := json.Unmarshal(reply, &registered); err != nil || !registered.Success {
		return fmt.Errorf("the shop did not connect: %s", reply)
	}
	id, err := accountID(ctx, rdb, prefix, shopURL)
	if err != nil {
		return err
	}

	// The bare proxies: one without Redis, one with the yardstick's round
	// trip, which reads the service's own account hash (and is given the
	// key it cannot open).
	self, err := os.Executable()
	if err != nil {
		return err
	}
	minEnv := append(baseEnv(), childEnv+"=min-proxy", "LOADTEST_PROXY_TOKEN="+token,
		"LOADTEST_SHOP_URL="+shopURL, "LOADTEST_SHOP_KEY="+apiKey, "LOADTEST_ACCOUNT_PREFIX="+prefix,
		"LOADTEST_PACER_PREFIX="+prefix+"-yardstick", "LOADTEST_PROXY_RATE="+strconv.Itoa(proxyOpts.rate))
	bare, err := startChild(ctx, "bare-proxy", self, nil, minEnv, filepath.Join(o.logDir, "bare-proxy.log"))
	if err != nil {
		return err
	}
	defer bare.Stop()
	yard, err := startChild(ctx, "yardstick-proxy", self, nil, append(minEnv, "LOADTEST_PROXY_REDIS="+redisURL),
		filepath.Join(o.logDir, "yardstick-proxy.log"))
	if err != nil {
		return err
	}
	defer yard.Stop()

	client := newClient(o.conc)
	proxied := "/service/api/accounts/" + id + "/crm/api/v5/orders"
	auth := "Bearer " + token
	paths := []*proxyPath{
		{name: "fake CRM directly", get: crmGetter(client, shopURL+"/api/v5/orders", "X-API-KEY", apiKey)},
		{name: "bare net/http reverse proxy", get: crmGetter(client, "http://"+bare.Addr+proxied, "Authorization", auth), proc: bare},
		{name: "bare proxy + one Redis round trip", get: crmGetter(client, "http://"+yard.Addr+proxied, "Authorization", auth), proc: yard},
		{name: "the service's proxy", get: crmGetter(client, svcURL+proxied, "Authorization", auth), proc: svcProc},
	}
	svcPid := os.Getpid()
	if svcProc != nil {
		svcPid = svcProc.Pid()
	}
	r.progressf("proxy: service at %s (pid %d), bare proxy at %s (pid %d), yardstick at %s (pid %d), fake CRM at %s (pid %d); logs in %s",
		svcURL, svcPid, bare.Addr, bare.Pid(), yard.Addr, yard.Pid(), shopURL, fake.proc.Pid(), o.logDir)
	// Warm every path (connections, the account's first read).
	for _, p := range paths {
		if res := drive(ctx, o.conc, 200, time.Second, p.get); res.Failed > 0 {
			return fmt.Errorf("%s: %d of 200 warm-up calls failed", p.name, res.Failed)
		}
	}
	for i := range proxyOpts.rounds {
		r.progressf("proxy: round %d/%d", i+1, proxyOpts.rounds)
		for k := range paths {
			p := paths[(i+k)%len(paths)]
			cpu0, rw0 := p.procCPU(), p.procReadsWrites()
			p.runs = append(p.runs, drive(ctx, o.conc, proxyOpts.requests, proxyOpts.duration, p.get))
			p.cpu = append(p.cpu, p.procCPU()-cpu0)
			p.rw = append(p.rw, p.procReadsWrites()-rw0)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	r.proxyResult(o, paths, svcProc == nil)
	return nil
}

// procCPU is the CPU its proxy's process has used so far, to the
// nanosecond (0: none of its own).
func (p *proxyPath) procCPU() time.Duration {
	if p.proc == nil {
		return 0
	}
	d, _ := procThreadsCPU(p.proc.Pid())
	return d
}

// procReadsWrites is how many read and write system calls its proxy's
// process has made so far (0: none of its own).
func (p *proxyPath) procReadsWrites() int64 {
	if p.proc == nil {
		return 0
	}
	n, _ := procReadsWrites(p.proc.Pid())
	return n
}

// accountID finds the connected shop's account id through the store's
// shop index (the store's key layout: {prefix}:shop:URL holds the id).
func accountID(ctx context.Context, rdb redis.UniversalClient, prefix, shopURL string) (string, error) {
	id, err := rdb.Get(ctx, "{"+prefix+"}:shop:"+shopURL).Result()
	if err != nil {
		return "", fmt.Errorf("the connected shop's account id: %w", err)
	}
	return id, nil
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

// serveMinProxy is the bare proxy child: a bearer check, the path's
// account id, then (with LOADTEST_PROXY_REDIS) the service's own account
// hash and the shop's turn in one Redis pipeline (the service pacer's
// script, a queue of its own), and one httputil.ReverseProxy with pooled
// buffers to the shop with its key. It opens no sealed field (it is given
// the key) and writes no log: it is the floor, not a service.
func serveMinProxy(stdin io.Reader, out io.Writer, getenv func(string) string, maxLife time.Duration) error {
	token := []byte("Bearer " + getenv("LOADTEST_PROXY_TOKEN"))
	shop, err := url.Parse(getenv("LOADTEST_SHOP_URL"))
	if err != nil {
		return err
	}
	apiKey, accounts := getenv("LOADTEST_SHOP_KEY"), getenv("LOADTEST_ACCOUNT_PREFIX")
	var rdb *redis.Client
	var pacer *ratelimit.Pacer
	if u := getenv("LOADTEST_PROXY_REDIS"); u != "" {
		opt, err := redis.ParseURL(u)
		if err != nil {
			return err
		}
		rdb = redis.NewClient(opt)
		defer rdb.Close()
		rate, _ := strconv.Atoi(getenv("LOADTEST_PROXY_RATE"))
		pacer = ratelimit.NewPacer(rdb, getenv("LOADTEST_PACER_PREFIX"), max(rate, 1), 5*time.Second)
	}
	type dest struct {
		shop *url.URL
		path string // the CRM API path, without the service's prefix
	}
	type destKey struct{}
	rp := &httputil.ReverseProxy{
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 32, IdleConnTimeout: 90 * time.Second},
		Rewrite: func(pr *httputil.ProxyRequest) {
			d := pr.In.Context().Value(destKey{}).(dest)
			pr.SetURL(d.shop)
			pr.Out.URL.Path, pr.Out.URL.RawPath = "/"+d.path, ""
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Set("X-API-KEY", apiKey)
		},
		BufferPool: &bufferPool{},
		ErrorLog:   log.New(io.Discard, "", 0),
	}
	const base = "/service/api/accounts/"
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), token) != 1 {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		rest, ok := strings.CutPrefix(r.URL.Path, base)
		id, path, ok2 := strings.Cut(rest, "/crm/")
		if !ok || !ok2 {
			http.NotFound(w, r)
			return
		}
		systemURL := shop
		if rdb != nil {
			pipe := rdb.Pipeline()
			acc := pipe.HGetAll(r.Context(), "{"+accounts+"}:acct:"+id)
			turn := pacer.ReserveAlong(r.Context(), pipe, id)
			_, _ = pipe.Exec(r.Context())
			h, err := acc.Result()
			if err != nil || len(h) == 0 {
				http.NotFound(w, r)
				return
			}
			if d, err := turn(); err != nil {
				http.Error(w, err.Error(), http.StatusTooManyRequests)
				return
			} else if d > 0 {
				time.Sleep(d)
			}
			if systemURL, err = url.Parse(h["url"]); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
		}
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), destKey{}, dest{systemURL, path})))
	})
	return serveChild(&http.Server{
		Handler: handler, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 90 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0),
	}, stdin, out, maxLife)
}

// bufferPool lends the bare proxy's ReverseProxy its copy buffers, as the
// service pools its own.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

func (r *report) proxyResult(o options, paths []*proxyPath, inProcess bool) {
	fmt.Fprintf(r.out, "\n## CRM proxy: GET /api/v5/orders through /service/api vs the fake CRM directly (%d connections, %d rounds of ≤%d requests or ≤%s each, CRM_RATE_PER_SECOND=%d, the CRM's own time %s)\n\n",
		o.conc, proxyOpts.rounds, proxyOpts.requests, proxyOpts.duration, proxyOpts.rate, proxyOpts.crmTime)
	fmt.Fprintln(r.out, "| path | requests | failed | req/s | p50 | p99 | proxy's CPU per request | its reads+writes per request |")
	fmt.Fprintln(r.out, "|---|---:|---:|---:|---:|---:|---:|---:|")
	type figures struct {
		p50, p99 time.Duration
		rps      float64
	}
	var f []figures
	for _, p := range paths {
		var all []time.Duration
		var failed, n int
		var elapsed, cpu time.Duration
		var rw int64
		for k, x := range p.runs {
			all = append(all, x.samples()...)
			failed += x.Failed
			n += x.Done
			elapsed += x.Elapsed
			cpu += p.cpu[k]
			rw += p.rw[k]
		}
		fig := figures{percentile(all, 50), percentile(all, 99), float64(n) / elapsed.Seconds()}
		f = append(f, fig)
		perCall, calls := "–", "–"
		switch {
		case p.proc != nil:
			perCall = fmt.Sprintf("%.1f µs", float64(cpu.Nanoseconds())/1000/float64(max(1, n)))
			calls = fmt.Sprintf("%.1f", float64(rw)/float64(max(1, n)))
		case p.name == "the service's proxy" && inProcess:
			perCall, calls = "in this process", "in this process"
		}
		fmt.Fprintf(r.out, "| %s | %d | %d | %.0f | %s | %s | %s | %s |\n", p.name, len(all), failed, fig.rps, ms(fig.p50), ms(fig.p99), perCall, calls)
	}
	direct, bare, yard, svc := f[0], f[1], f[2], f[3]
	added50, added99, ratio := svc.p50-direct.p50, svc.p99-direct.p99, svc.rps/direct.rps
	fmt.Fprintf(r.out, "\nadded by the service's proxy: p50 %s, p99 %s; throughput proxy/direct %.2f×\n", ms(added50), ms(added99), ratio)
	fmt.Fprintf(r.out, "added by the bare reverse proxy: p50 %s, p99 %s; %.2f× direct; with the Redis round trip: p50 %s, p99 %s; %.2f× direct\n",
		ms(bare.p50-direct.p50), ms(bare.p99-direct.p99), bare.rps/direct.rps, ms(yard.p50-direct.p50), ms(yard.p99-direct.p99), yard.rps/direct.rps)
	fmt.Fprintf(r.out, "service's proxy vs the yardstick (bare proxy + Redis round trip): throughput %.2f×, added p50 %s more\n",
		svc.rps/yard.rps, ms(svc.p50-yard.p50))
	if proxyOpts.crmTime > 0 {
		// The targets are of the proxy's own cost: a CRM that takes its time
		// hides it, so no verdict is given here.
		fmt.Fprintf(r.out, "(the fake CRM took %s per call: the targets are judged with -proxy-crm-time 0)\n", proxyOpts.crmTime)
		return
	}
	fmt.Fprintln(r.out, "\n| target | this run | target | met |\n|---|---:|---|---|")
	fmt.Fprintf(r.out, "| CRM proxy: added p99 on loopback | %s | < 1 ms | %s |\n", ms(added99), yes(added99 < time.Millisecond))
	fmt.Fprintf(r.out, "| CRM proxy: throughput vs direct (rate limit raised) | %.2f× | ≥ 0.8× | %s |\n", ratio, yes(ratio >= 0.8))
}
