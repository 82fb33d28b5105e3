// Command loadtest measures the service against its limits, in one run on
// loopback that stops by itself (every phase is bounded in requests and in
// time, and the whole run by -timeout):
//
//   - startup: the real binary (go build, then exec) on the embedded store,
//     from exec to the first 200 from /readyz;
//   - config: GET /config on the service and on a bare net/http handler
//     answering the same bytes, alternately, at the same concurrency:
//     throughput ratio and p50/p99 latency of each;
//   - register: distinct shops connecting through POST /register against
//     the fake CRM (crm/crmtest, in a child process) with real Redis
//     (REDIS_URL; the embedded store otherwise, with a note): p50/p99 of
//     the total and of our overhead, the total minus the CRM's own time;
//   - accounts: more registers up to -accounts, then Redis MEMORY USAGE per
//     account and this process's RSS.
//
// The service runs in this process, wired as main.run wires it; see
// BENCHMARKS.md for what each figure includes.
//
//	go run ./cmd/loadtest
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
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/modulehub/simpleconnect/crm/crmtest"
)

type options struct {
	phases       []string
	conc         int
	configReqs   int
	configDur    time.Duration
	rounds       int
	configTarget string
	registers    int
	registerConc []int
	registerDur  time.Duration
	accounts     int
	fillConc     int
	fillDur      time.Duration
	startups     int
	binary       string
	redisURL     string
	rateLimit    int
	logTo        string
	cpuprofile   string
	memprofile   string
	timeout      time.Duration
}

func main() {
	if os.Getenv(childEnv) == "fake-crm" {
		if err := serveFakeCRM(os.Stdin, os.Stdout, 10*time.Minute); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest fake CRM:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	phases := fs.String("phases", "startup,config,register,accounts", "phases to run, comma-separated")
	fs.IntVar(&o.conc, "c", 8, "concurrent connections for /config (service and baseline alike)")
	fs.IntVar(&o.configReqs, "config-requests", 20000, "requests per target per round of /config")
	fs.DurationVar(&o.configDur, "config-duration", 2*time.Second, "time limit per target per round of /config")
	fs.IntVar(&o.rounds, "rounds", 10, "rounds of /config; each drives the baseline and the service, in alternating order")
	fs.StringVar(&o.configTarget, "config-target", "both", "drive both, or only the baseline or the service (to profile one side with -cpuprofile)")
	fs.IntVar(&o.registers, "registers", 2000, "registers (distinct shops) whose latency is measured, at each -register-c")
	registerConc := fs.String("register-c", "1,4", "concurrent registers in the measured phase; a list runs it once per value")
	fs.DurationVar(&o.registerDur, "register-duration", 30*time.Second, "time limit of the measured registers")
	fs.IntVar(&o.accounts, "accounts", 10000, "accounts in Redis when memory and RSS are read (registers included)")
	fs.IntVar(&o.fillConc, "fill-c", 16, "concurrent registers while filling up to -accounts")
	fs.DurationVar(&o.fillDur, "fill-duration", 60*time.Second, "time limit of the fill")
	fs.IntVar(&o.startups, "startups", 5, "starts of the binary to time")
	fs.StringVar(&o.binary, "binary", "", "service binary to time (default: go build of the module)")
	fs.StringVar(&o.redisURL, "redis-url", os.Getenv("REDIS_URL"), "Redis for the register and accounts phases (default $REDIS_URL; empty: the embedded store)")
	fs.IntVar(&o.rateLimit, "rate-limit", 1_000_000, "RATE_LIMIT_PER_MINUTE of the service: on, so its Redis call is paid, but high enough never to refuse")
	fs.StringVar(&o.logTo, "log", "", "file for the service's JSON request log (default: formatted, then discarded)")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of this process (service, load generator) to this file")
	fs.StringVar(&o.memprofile, "memprofile", "", "write a heap profile of this process to this file after the accounts phase")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Minute, "hard limit of the whole run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !slices.Contains([]string{"both", "baseline", "service"}, o.configTarget) {
		return fmt.Errorf("-config-target must be both, baseline or service")
	}
	for _, v := range strings.Split(*registerConc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 {
			return fmt.Errorf("-register-c: %q is not a positive number", v)
		}
		o.registerConc = append(o.registerConc, n)
	}
	o.phases = strings.Split(*phases, ",")
	for _, p := range o.phases {
		if !slices.Contains([]string{"startup", "config", "register", "accounts"}, p) {
			return fmt.Errorf("unknown phase %q", p)
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
	err := runPhases(ctx, o, r)
	r.summary()
	return err
}

func has(phases []string, p string) bool { return slices.Contains(phases, p) }

func runPhases(ctx context.Context, o options, r *report) error {
	if has(o.phases, "startup") {
		if err := phaseStartup(ctx, o, r); err != nil {
			return fmt.Errorf("startup: %w", err)
		}
	}
	if !has(o.phases, "config") && !has(o.phases, "register") && !has(o.phases, "accounts") {
		return nil
	}

	var logw io.Writer = io.Discard
	if o.logTo != "" {
		f, err := os.Create(o.logTo)
		if err != nil {
			return err
		}
		defer f.Close()
		logw = f
	}
	prefix := "loadtest-" + randomHex(8)
	svc, err := startService(ctx, serviceOptions{
		RedisURL: o.redisURL, Prefix: prefix, Secret: "loadtest-secret-" + randomHex(8),
		RateLimit: o.rateLimit, Resolver: crmtest.LoopbackResolver(shopSuffix), Log: logw,
	})
	if err != nil {
		return fmt.Errorf("start the service: %w", err)
	}
	defer svc.Close()
	if !svc.Embedded {
		// Only this run's keys, by their random prefix; never FLUSHDB.
		defer func() {
			n, err := deleteKeys(context.Background(), svc.Store.Client(), prefix)
			r.progressf("deleted this run's %d Redis keys (prefix %s)", n, prefix)
			if err != nil {
				r.progressf("cleanup: %v", err)
			}
		}()
	}
	r.storeNote(svc)

	if has(o.phases, "config") {
		if err := phaseConfig(ctx, o, r, svc); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	if has(o.phases, "register") || has(o.phases, "accounts") {
		if err := phaseRegister(ctx, o, r, svc); err != nil {
			return fmt.Errorf("register: %w", err)
		}
	}
	return ctx.Err()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// rss reads this process's resident set size and its peak, in bytes.
func rss() (cur, peak int64, err error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(line, "VmRSS: %d kB", &kb); err == nil {
			cur = kb << 10
		}
		if _, err := fmt.Sscanf(line, "VmHWM: %d kB", &kb); err == nil {
			peak = kb << 10
		}
	}
	if cur == 0 {
		return 0, 0, errors.New("no VmRSS in /proc/self/status")
	}
	return cur, peak, nil
}

// heapInUse is the Go heap's in-use spans, garbage not yet collected
// included.
func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// liveHeap collects garbage first, then reports the bytes still reachable.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
