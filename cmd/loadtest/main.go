// Command loadtest measures the service against a minimal module built the
// way RetailCRM's own Go libraries suggest (bench/peer) and against a bare
// net/http handler, in one run on loopback that stops by itself (every
// phase is bounded in requests and in time, the whole run by -timeout) and
// cleans up (no child process, no Redis key of its own left):
//
//   - startup: the service binary on the embedded store, from exec to the
//     first 200 from /readyz;
//   - config: GET /config on the bare handler, the peer and the service, in
//     rotating rounds at the same concurrency: throughput, latency and each
//     server's own CPU per request;
//   - register: POST /register to the peer and the service in alternating
//     rounds against a fake CRM (a child process; every shop has its own
//     loopback address): sequential and 4 concurrent on new shops, 8 clients
//     on 8 shops, 8 clients on one shop; each server's CPU per register,
//     registers/s, and latency beyond the fake CRM's own time;
//   - same-shop: issue 12's check, 8 clients × 50 registers of one shop
//     with one key at the service: no failure, one account, one clientId;
//   - accounts: the service filled up to -accounts, Redis MEMORY USAGE per
//     account; then each server's peak RSS;
//   - wave: the CRM's busy day from one address, limits at their defaults:
//     300 shops connecting and 1,000 activity callbacks, beside more failing
//     callbacks than the failure budget allows; no valid request may be
//     refused.
//
// The service runs as deployed: the binary built from this module in its
// own process, its JSON log written to a file. -inprocess runs it in this
// process instead, for -cpuprofile only (its CPU then includes the load
// generator's). Every figure and ratio comes from the same run; see
// BENCHMARKS.md.
//
//	REDIS_URL=redis://127.0.0.1:6379/0 go run ./cmd/loadtest
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// childEnv names the child mode of this program: "fake-crm" or "bare".
const childEnv = "LOADTEST_CHILD"

var allPhases = []string{"startup", "config", "register", "same-shop", "accounts", "wave", "proxy"}

type options struct {
	phases      []string
	conc        int
	configReqs  int
	configSize  int // bytes of the service's /config reply
	rounds      int
	roundDur    time.Duration
	seqPerRound int
	accounts    int
	startups    int
	sameShopN   int
	redisURL    string
	serviceBin  string
	peerBin     string
	peerDir     string
	logDir      string
	inProcess   bool
	yardstick   bool
	infoArray   bool
	cpuprofile  string
	memprofile  string
	timeout     time.Duration
	waveShops   int
	waveCalls   int
	waveConc    int
}

func main() {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(childMain(mode))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// childMain runs this program as one of its own children; each exits when
// its stdin closes (the parent stopped it or died) or after 10 minutes.
func childMain(mode string) int {
	var err error
	switch mode {
	case "fake-crm":
		ordersDelay, _ := time.ParseDuration(os.Getenv("LOADTEST_ORDERS_DELAY"))
		err = serveFakeCRM(os.Stdin, os.Stdout, os.Getenv("LOADTEST_INFO_ARRAY") == "1", ordersDelay, 10*time.Minute)
	case "min-proxy":
		err = serveMinProxy(os.Stdin, os.Stdout, os.Getenv, 10*time.Minute)
	case "bare":
		err = serveBare(os.Stdin, os.Stdout, []byte(os.Getenv("LOADTEST_BODY")), os.Getenv("LOADTEST_CONTENT_TYPE"), 10*time.Minute)
	default:
		err = fmt.Errorf("unknown child mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest child:", err)
		return 1
	}
	return 0
}

func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	phases := fs.String("phases", strings.Join(allPhases, ","), "phases to run, comma-separated")
	fs.IntVar(&o.conc, "c", 8, "concurrent connections for /config (every target alike)")
	fs.IntVar(&o.configReqs, "config-requests", 20000, "requests per target per round of /config")
	fs.IntVar(&o.rounds, "rounds", 10, "rounds of each compared phase; the order of the targets changes every round")
	fs.DurationVar(&o.roundDur, "round-duration", 500*time.Millisecond, "time limit per target per round (short rounds, so that others' load on a shared machine hits every target alike)")
	fs.IntVar(&o.seqPerRound, "registers", 300, "registers per target per round, at most, sequential (twice that at 4 concurrent, 8 times with 8 clients); each new shop is a listener of the fake CRM, and its descriptors are limited")
	fs.IntVar(&o.accounts, "accounts", 10000, "accounts in the service's store when Redis memory and RSS are read")
	fs.IntVar(&o.sameShopN, "same-shop", 400, "registers of one shop by 8 clients in the same-shop check")
	fs.IntVar(&o.startups, "startups", 5, "starts of the binary to time")
	fs.StringVar(&o.redisURL, "redis-url", os.Getenv("REDIS_URL"), "Redis (default $REDIS_URL; empty: a miniredis in this process, shared by the service and the peer)")
	fs.StringVar(&o.serviceBin, "service-binary", "", "the service binary (default: go build of this module)")
	fs.StringVar(&o.peerBin, "peer-binary", "", "the peer binary (default: go build of bench/peer)")
	fs.StringVar(&o.logDir, "logs", "", "keep the children's logs in this directory (default: a temporary one, removed)")
	fs.BoolVar(&o.inProcess, "inprocess", false, "run the service in this process (to profile it with -cpuprofile; its CPU figures then include the load generator)")
	fs.BoolVar(&o.yardstick, "yardstick", true, "also drive, in the sequential and 8-shop phases, a peer that makes the service's round trips")
	fs.BoolVar(&o.infoArray, "crm-info-array", false, `the fake CRM answers edits with "info":[] (the peer's workaround in use)`)
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of this process to this file (use with -inprocess)")
	fs.StringVar(&o.memprofile, "memprofile", "", "write a heap profile of this process to this file after the accounts phase (use with -inprocess)")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "hard limit of the whole run, builds included")
	fs.IntVar(&o.waveShops, "wave-shops", 300, "distinct shops connecting in the wave phase")
	fs.IntVar(&o.waveCalls, "wave-callbacks", 1000, "activity callbacks in the wave phase")
	fs.IntVar(&o.waveConc, "wave-c", 4, "concurrent requests in the wave phase")
	addProxyFlags(fs) // proxy.go
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.waveShops < 1 || o.waveCalls < 0 || o.waveConc < 1 {
		return fmt.Errorf("-wave-shops and -wave-c must be at least 1, -wave-callbacks at least 0")
	}
	o.phases = strings.Split(*phases, ",")
	for _, p := range o.phases {
		if !slices.Contains(allPhases, p) {
			return fmt.Errorf("unknown phase %q (phases: %s)", p, strings.Join(allPhases, ","))
		}
	}
	// The fake CRM opens a listener per shop, and its child inherits this
	// process's descriptor limit: raise it to the hard limit, and refuse a
	// run that could not fit.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		if need := uint64(max(o.accounts, 16*o.rounds*o.seqPerRound/5) + 4000); lim.Cur < need {
			return fmt.Errorf("the fake CRM needs a descriptor per shop: about %d, but ulimit -n is %d; lower -accounts, -rounds or -registers", need, lim.Cur)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	r := &report{out: stdout, progress: stderr}
	r.machine()
	err := runAll(ctx, o, r)
	r.summary()
	return err
}

// openRedis is the run's store: REDIS_URL's Redis, or a miniredis in this
// process when none is set (its CPU then counts as the generator's, and
// Redis memory cannot be measured), shared by whom; the note says which.
func openRedis(o options, r *report, whom string) (string, *redis.Client, func(), error) {
	url, stop := o.redisURL, func() {}
	if url == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return "", nil, nil, err
		}
		url, stop = "redis://"+mr.Addr()+"/0", mr.Close
		r.note("store: **miniredis in the load generator's process** (REDIS_URL not set), shared by " + whom + ": its CPU counts as the generator's, and Redis memory cannot be measured")
	} else {
		r.note("store: real Redis (REDIS_URL), shared by " + whom + "; every key of this run is under a random prefix, deleted at the end")
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		stop()
		return "", nil, nil, errors.New("-redis-url is not a Redis URL")
	}
	rdb := redis.NewClient(opt)
	return url, rdb, func() { _ = rdb.Close(); stop() }, nil
}

func has(phases []string, p string) bool { return slices.Contains(phases, p) }

// binaries are the service and peer executables.
type binaries struct{ service, peer string }

func build(ctx context.Context, o options, r *report) (binaries, func(), error) {
	b := binaries{service: o.serviceBin, peer: o.peerBin}
	if b.service != "" && b.peer != "" {
		return b, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "loadtest-bin-")
	if err != nil {
		return b, nil, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	root, err := moduleRoot(ctx)
	if err != nil {
		cleanup()
		return b, nil, err
	}
	start := time.Now()
	if b.service == "" {
		b.service = filepath.Join(dir, "simpleconnect")
		if err := goBuild(ctx, root, b.service, serviceBuildFlags...); err != nil {
			cleanup()
			return b, nil, err
		}
	}
	if b.peer == "" {
		b.peer = filepath.Join(dir, "peer")
		if err := goBuild(ctx, filepath.Join(root, "bench", "peer"), b.peer, peerBuildFlags...); err != nil {
			cleanup()
			return b, nil, err
		}
	}
	r.progressf("built the service and the peer in %s (not part of any figure)", time.Since(start).Round(time.Millisecond))
	return b, cleanup, nil
}

func runAll(ctx context.Context, o options, r *report) error {
	bins, cleanBins, err := build(ctx, o, r)
	if err != nil {
		return err
	}
	defer cleanBins()
	// Every phase's children log here, never into the working directory.
	logDir := o.logDir
	if logDir == "" {
		d, err := os.MkdirTemp("", "loadtest-logs-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		logDir = d
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}

	o.logDir = logDir
	if has(o.phases, "startup") {
		if err := phaseStartup(ctx, o, bins.service, r); err != nil {
			return fmt.Errorf("startup: %w", err)
		}
	}
	if has(o.phases, "proxy") { // proxy.go: a service instance of its own
		if err := phaseProxy(ctx, o, bins.service, r); err != nil {
			return fmt.Errorf("proxy: %w", err)
		}
	}
	if !has(o.phases, "config") && !has(o.phases, "register") && !has(o.phases, "same-shop") && !has(o.phases, "accounts") && !has(o.phases, "wave") {
		return nil
	}

	redisURL, rdb, closeRedis, err := openRedis(o, r, "the service and the peer")
	if err != nil {
		return err
	}
	defer closeRedis()
	rc := newRedisProc(ctx, rdb)

	svc, peer, bare, err := startTargets(ctx, o, bins, logDir, redisURL, r)
	if err != nil {
		return err
	}
	stopped := false
	stopAll := func() {
		if !stopped {
			stopped = true
			bare.stop()
			peer.stop()
			svc.stop()
		}
	}
	defer stopAll()
	defer func() {
		// Only this run's keys, by their random prefixes; never FLUSHDB.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, prefix := range []string{svc.prefix, peer.prefix} {
			n, err := deleteKeys(cctx, rdb, prefix)
			r.progressf("deleted this run's %d Redis keys (prefix %s)", n, prefix)
			if err != nil {
				r.progressf("cleanup: %v", err)
			}
		}
	}()

	body, _, err := fetch(ctx, svc.url+"/config")
	if err != nil {
		return err
	}
	o.configSize = len(body)
	res := &results{inProcess: o.inProcess, redisKnown: rc.known()}
	r.res = res
	if has(o.phases, "config") {
		if res.config, err = phaseConfig(ctx, o, r, []*target{bare, peer, svc}); err != nil {
			return fmt.Errorf("config: %w", err)
		}
		r.configResult(o, res.config, []*target{bare, peer, svc})
	}

	needCRM := has(o.phases, "register") || has(o.phases, "same-shop") || has(o.phases, "accounts") || has(o.phases, "wave")
	if needCRM {
		fake, err := startFakeCRM(ctx, o.infoArray, logDir, 0)
		if err != nil {
			return err
		}
		defer fake.proc.Stop()
		g := &registrar{runID: randomHex(4), fake: fake}
		for _, t := range []*target{peer, svc} {
			t.client = newClient(16)
		}
		if o.yardstick && has(o.phases, "register") {
			y, err := startYardstick(ctx, bins.peer, logDir, redisURL, peer.secret)
			if err != nil {
				return err
			}
			defer y.stop()
			defer func() {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				defer cancel()
				if n, err := deleteKeys(cctx, rdb, y.prefix); err != nil || n > 0 {
					r.progressf("deleted this run's %d Redis keys (prefix %s) %v", n, y.prefix, err)
				}
			}()
			res.yardstick = y
		}
		if err := phaseRegisters(ctx, o, r, g, rdb, rc, svc, peer, res, logDir); err != nil {
			return err
		}
		if has(o.phases, "accounts") {
			if err := phaseAccounts(ctx, o, r, g, rdb, svc, peer, res); err != nil {
				return fmt.Errorf("accounts: %w", err)
			}
		}
		// Last: its failing callbacks spend this address's failure budget.
		if has(o.phases, "wave") {
			if res.wave, err = phaseWave(ctx, o, r, g, svc); err != nil {
				return fmt.Errorf("wave: %w", err)
			}
		}
	}
	stopAll() // reads each process's peak RSS
	res.rssPeer, res.rssService = peer.peakRSS(), svc.peakRSS()
	if svc.proc != nil {
		res.logLines, res.logBytes = countLines(filepath.Join(logDir, "service.log"))
	}
	return ctx.Err()
}

func phaseRegisters(ctx context.Context, o options, r *report, g *registrar, rdb redis.UniversalClient, rc *redisProc, svc, peer *target, res *results, logDir string) error {
	both := []*target{peer, svc}
	if has(o.phases, "register") {
		withYardstick := both
		if res.yardstick != nil {
			withYardstick = []*target{peer, svc, res.yardstick}
		}
		specs := []struct {
			spec    regSpec
			dst     *map[string]*regTally
			targets []*target
		}{
			{regSpec{title: "sequential, new shops", conc: 1, perRound: o.seqPerRound, shops: newShops(o.seqPerRound)}, &res.seq, withYardstick},
			{regSpec{title: "4 concurrent, new shops", conc: 4, perRound: 2 * o.seqPerRound, shops: newShops(2 * o.seqPerRound)}, &res.c4, both},
			{regSpec{title: "8 clients, 8 shops", conc: 8, perRound: 8 * o.seqPerRound, fixed: true, shops: shopPerWorker(8)}, &res.shops8, withYardstick},
		}
		for _, s := range specs {
			t, err := runRegisterPhase(ctx, o, r, g, rc, s.spec, s.targets)
			if err != nil {
				return fmt.Errorf("register %s: %w", s.spec.title, err)
			}
			*s.dst = t
			r.registerResult(s.spec, t, s.targets, res)
		}
		// One shop: the service must serialise, never refuse, and end with
		// one account and one clientId for it.
		all := "{" + svc.prefix + "}:idx:all"
		before, err := rdb.ZCard(ctx, all).Result()
		if err != nil {
			return err
		}
		spec := regSpec{title: "8 clients, one shop", conc: 8, perRound: 8 * o.seqPerRound, fixed: true, shops: oneShop}
		t, err := runRegisterPhase(ctx, o, r, g, rc, spec, both)
		if err != nil {
			return fmt.Errorf("register %s: %w", spec.title, err)
		}
		res.shop1 = t
		after, err := rdb.ZCard(ctx, all).Result()
		if err != nil {
			return err
		}
		ids, err := g.fake.clientIDs(ctx, g.fake.shop(svc.nextShop-1), svc.code)
		if err != nil {
			return err
		}
		res.shop1Accounts, res.shop1ClientIDs = after-before, len(ids)
		r.registerResult(spec, t, both, res)

		// The same across two replicas of the service: the per-account
		// lease, polled in Redis, serialises them; one replica alone
		// alternates with them for comparison.
		pair, replica, err := startReplicas(ctx, svc, logDir)
		if err != nil {
			return err
		}
		defer replica.Stop()
		spec = regSpec{title: "8 clients, one shop, 2 replicas", conc: 8, perRound: 8 * o.seqPerRound, fixed: true, shops: oneShop}
		t, err = runRegisterPhase(ctx, o, r, g, rc, spec, []*target{svc, pair})
		if err != nil {
			return fmt.Errorf("register %s: %w", spec.title, err)
		}
		svc.nextShop = max(svc.nextShop, pair.nextShop)
		res.replicas = t
		r.registerResult(spec, t, []*target{svc, pair}, res)
	}
	if has(o.phases, "same-shop") {
		s, err := sameShopCheck(ctx, g, rdb, svc, 8, o.sameShopN)
		if err != nil {
			return fmt.Errorf("same-shop: %w", err)
		}
		res.sameShop = &s
		r.sameShopResult(s)
	}
	return nil
}

// phaseAccounts fills the service's store up to o.accounts accounts (new
// shops, 16 at a time), the peer's with as many registers, then measures
// Redis memory per account.
func phaseAccounts(ctx context.Context, o options, r *report, g *registrar, rdb redis.UniversalClient, svc, peer *target, res *results) error {
	all := "{" + svc.prefix + "}:idx:all"
	have, err := rdb.ZCard(ctx, all).Result()
	if err != nil {
		return err
	}
	fill := max(0, o.accounts-int(have))
	for _, t := range []*target{svc, peer} {
		base := t.nextShop
		t.nextShop += fill
		if err := g.fake.ensure(ctx, t.nextShop); err != nil {
			return err
		}
		var first firstError
		run := drive(ctx, 16, fill, 60*time.Second, func(ctx context.Context, _, i int) (time.Duration, error) {
			d, _, err := g.send(ctx, t, 0, g.fake.shop(base+i), g.newKey(t))
			first.keep(ctx, err)
			return d, err
		})
		first.report(r, "first failed register while filling "+t.name)
		r.progressf("filled %s with %d registers in %s (%.0f/s at 16 concurrent, %d failed)",
			t.name, run.Done, run.Elapsed.Round(time.Millisecond), float64(run.Done)/run.Elapsed.Seconds(), run.Failed)
		if _, err := g.fake.times(ctx); err != nil { // drop what the fill left
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if o.memprofile != "" {
		if err := writeHeapProfile(o.memprofile); err != nil {
			return err
		}
	}
	a := accountsResult{}
	a.accounts, _ = rdb.ZCard(ctx, all).Result()
	for _, t := range []*target{svc, peer} {
		if t.proc != nil {
			if cur, _, err := procMemory(t.proc.Pid()); err == nil {
				a.rss = append(a.rss, [2]string{t.name, mib(cur)})
			}
		}
	}
	if o.redisURL == "" {
		a.note = "miniredis has no MEMORY USAGE: Redis memory per account not measured; set REDIS_URL."
	} else if a.classes, err = redisMemory(ctx, rdb, svc.prefix); err != nil {
		return fmt.Errorf("MEMORY USAGE: %w", err)
	}
	res.accounts = &a
	r.accountsResult(a)
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func countLines(path string) (lines, size int64) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0
	}
	return int64(strings.Count(string(b), "\n")), int64(len(b))
}

// firstError keeps the first failure of a phase, to show what went wrong.
type firstError struct {
	mu  sync.Mutex
	err error
}

func (f *firstError) keep(ctx context.Context, err error) {
	if err == nil || ctx.Err() != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

func (f *firstError) report(r *report, what string) {
	if f.err != nil {
		r.progressf("%s: %v", what, f.err)
	}
}
