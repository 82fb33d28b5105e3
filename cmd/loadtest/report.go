package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// report prints each phase's figures as Markdown (stdout) and progress
// (stderr), then the targets.
type report struct {
	out, progress io.Writer
	targets       [][4]string // target, measured, limit, met
}

func (r *report) progressf(format string, args ...any) {
	fmt.Fprintf(r.progress, "loadtest: "+format+"\n", args...)
}

func (r *report) target(name, measured, limit string, met bool) {
	verdict := "yes"
	if !met {
		verdict = "**no**"
	}
	r.targets = append(r.targets, [4]string{name, measured, limit, verdict})
}

func (r *report) machine() {
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "unknown"
	if b, err := exec.Command("uname", "-sr").Output(); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	fmt.Fprintf(r.out, "# loadtest %s\n\n", time.Now().UTC().Format(time.DateTime+" UTC"))
	fmt.Fprintf(r.out, "machine: %d CPUs (GOMAXPROCS %d), %s, %s, %s %s/%s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), cpu, kernel, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(r.out, "command: loadtest %s\n", strings.Join(os.Args[1:], " "))
}

func (r *report) storeNote(svc *service) {
	if svc.Embedded {
		fmt.Fprintln(r.out, "store: **embedded** (REDIS_URL not set): register figures include miniredis running in this process, and Redis memory cannot be measured")
	} else {
		fmt.Fprintln(r.out, "store: real Redis (REDIS_URL), key prefix "+svc.Prefix+" (deleted at the end)")
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func (r *report) configResult(o options, size int, baseName string, base []run, svcName string, svc []run) {
	fmt.Fprintf(r.out, "\n## GET /config: service vs bare net/http (%d-byte reply, %d connections, %d rounds of ≤%d requests or ≤%s each)\n\n",
		size, o.conc, o.rounds, o.configReqs, o.configDur)
	fmt.Fprintln(r.out, "| server | requests | failed | req/s | p50 | p99 | CPU per request |")
	fmt.Fprintln(r.out, "|---|---:|---:|---:|---:|---:|---:|")
	type totals struct {
		n            int
		elapsed, cpu time.Duration
	}
	sum := func(runs []run) (t totals) {
		for _, x := range runs {
			t.n += x.Done
			t.elapsed += x.Elapsed
			t.cpu += x.CPU
		}
		return t
	}
	row := func(name string, runs []run) {
		var all []time.Duration
		failed := 0
		for _, x := range runs {
			all = append(all, x.samples()...)
			failed += x.Failed
		}
		t := sum(runs)
		fmt.Fprintf(r.out, "| %s | %d | %d | %.0f | %s | %s | %.1f µs |\n", name, len(all), failed, float64(t.n)/t.elapsed.Seconds(),
			ms(percentile(all, 50)), ms(percentile(all, 99)), float64(t.cpu.Nanoseconds())/1000/float64(max(1, t.n)))
	}
	row(baseName, base)
	row(svcName, svc)
	b, s := sum(base), sum(svc)
	ratio := (float64(s.n) / s.elapsed.Seconds()) / (float64(b.n) / b.elapsed.Seconds())
	var rounds []string
	var perRound []float64
	for i := range min(len(base), len(svc)) {
		x := (float64(svc[i].Done) / svc[i].Elapsed.Seconds()) / (float64(base[i].Done) / base[i].Elapsed.Seconds())
		perRound = append(perRound, x)
		rounds = append(rounds, fmt.Sprintf("%.2f", x))
	}
	slices.Sort(perRound)
	median := 0.0
	if len(perRound) > 0 {
		median = perRound[len(perRound)/2]
	}
	cpuRatio := (float64(b.cpu) / float64(max(1, b.n))) / (float64(s.cpu) / float64(max(1, s.n)))
	fmt.Fprintf(r.out, "\nthroughput service/baseline: **%.2f** over all rounds, median of rounds %.2f (per round: %s); CPU per request baseline/service: %.2f\n",
		ratio, median, strings.Join(rounds, ", "), cpuRatio)
	fmt.Fprintln(r.out, "(CPU is this whole process: load generator and server; the baseline and the service share the generator's cost)")
	r.target("/config throughput vs bare net/http", fmt.Sprintf("%.2f× (median round %.2f×)", ratio, median), "≥ 0.9×", ratio >= 0.9)
}

func (r *report) redisRTT(pings []time.Duration) {
	fmt.Fprintf(r.out, "\nRedis round trip (PING from this process, %d sequential): p50 %s, p99 %s\n",
		len(pings), ms(percentile(pings, 50)), ms(percentile(pings, 99)))
}

func (r *report) registerResult(conc int, res run, samples []registerSample) {
	var total, crm, conn, over, overNoConn, hop, redisT, rest []time.Duration
	exchanges, untraced, untimed, trips := 0, 0, 0, 0
	for i, d := range res.Latency {
		if d < 0 {
			continue
		}
		s := samples[i]
		if s.exchanges == 0 {
			untraced++
			continue
		}
		exchanges += s.exchanges
		untimed += s.untimed
		trips += s.redisTrips
		total = append(total, d)
		crm = append(crm, s.crm)
		conn = append(conn, s.conn)
		over = append(over, d-s.crm)
		overNoConn = append(overNoConn, d-s.crm-s.conn)
		hop = append(hop, d-s.handler)
		redisT = append(redisT, s.redis)
		rest = append(rest, s.handler-s.crm-s.conn-s.redis)
	}
	n := max(1, len(total))
	fmt.Fprintf(r.out, "\n## POST /register: %d distinct shops, %d concurrent, fake CRM in a child process\n\n", res.Done, conc)
	fmt.Fprintf(r.out, "%d registers in %s (%.0f/s), %d failed; per register %.2f CRM exchanges (credentials, edit) and %.2f Redis round trips",
		res.Done, res.Elapsed.Round(time.Millisecond), float64(res.Done)/res.Elapsed.Seconds(), res.Failed,
		float64(exchanges)/float64(n), float64(trips)/float64(n))
	if untraced+untimed > 0 {
		fmt.Fprintf(r.out, "; %d without a trace, %d exchanges untimed (counted as ours)", untraced, untimed)
	}
	fmt.Fprintln(r.out)
	fmt.Fprintln(r.out, "\n| per register | p50 | p99 | max |")
	fmt.Fprintln(r.out, "|---|---:|---:|---:|")
	row := func(name string, ds []time.Duration) {
		fmt.Fprintf(r.out, "| %s | %s | %s | %s |\n", name, ms(percentile(ds, 50)), ms(percentile(ds, 99)), ms(percentile(ds, 100)))
	}
	row("total, as the CRM marketplace sees it", total)
	row("CRM's own time: request written → first reply byte, summed", crm)
	row("**our overhead = total − CRM's own time**", over)
	row("… connection to the shop's CRM: DNS + TCP connect", conn)
	row("… our overhead without that connect", overNoConn)
	row("… Redis: commands and pipelines, summed", redisT)
	row("… HTTP hop to the service: total − time in its handler", hop)
	row("… the rest: handler − CRM − connect − Redis (our CPU, waits)", rest)
	p99 := percentile(over, 99)
	r.target(fmt.Sprintf("/register overhead p99 beyond the CRM's time, %d concurrent", conc), ms(p99), "< 5 ms", p99 < 5*time.Millisecond && len(over) > 0)
}

type accountsResult struct {
	accounts                     int // acct keys in the store
	classes                      map[string]*keyClass
	note                         string
	rssBefore, rssAfter, rssPeak int64
	heapBefore, heapAfter        uint64
	liveHeap                     uint64 // after a forced GC, read after the RSS
}

func (r *report) accountsResult(a accountsResult) {
	accounts := a.accounts
	fmt.Fprintf(r.out, "\n## Accounts: Redis memory and process RSS\n\n")
	if a.note != "" {
		fmt.Fprintln(r.out, a.note)
	} else {
		fmt.Fprintf(r.out, "MEMORY USAGE (SAMPLES 0) over every key of this run, %d accounts:\n\n", accounts)
		fmt.Fprintln(r.out, "| keys | count | bytes | bytes per account |")
		fmt.Fprintln(r.out, "|---|---:|---:|---:|")
		kinds := make([]string, 0, len(a.classes))
		for k := range a.classes {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		var own, shared, stream int64
		for _, k := range kinds {
			c := a.classes[k]
			fmt.Fprintf(r.out, "| %s | %d | %d | %.0f |\n", k, c.Keys, c.Bytes, float64(c.Bytes)/float64(max(1, accounts)))
			switch k {
			case "acct", "shop", "client":
				own += c.Bytes
			case "events":
				stream += c.Bytes
			default:
				shared += c.Bytes
			}
		}
		per := func(b int64) float64 { return float64(b) / float64(max(1, accounts)) }
		fmt.Fprintf(r.out, "\nper account: own keys (acct, shop, client) %.0f B + indexes and limiter %.0f B = **%.0f B**; the event stream (capped, not per account) adds %.0f B at this count; everything: %.0f B\n",
			per(own), per(shared), per(own+shared), per(stream), per(own+shared+stream))
		r.target("Redis per account (own keys + indexes)", fmt.Sprintf("%.0f B", per(own+shared)), "≤ 2048 B", per(own+shared) <= 2048 && accounts > 0)
	}
	fmt.Fprintf(r.out, "\nprocess RSS (VmRSS of /proc/self/status: service and load generator; the fake CRM is another process): %s before the registers, **%s after %d accounts** (VmHWM peak %s). Go heap in use %s → %s; live after a forced GC %s\n",
		mib(a.rssBefore), mib(a.rssAfter), accounts, mib(a.rssPeak), mib(int64(a.heapBefore)), mib(int64(a.heapAfter)), mib(int64(a.liveHeap)))
}

func (r *report) startupResult(bin []startupTiming, inProcess []time.Duration) {
	var listening, ready []time.Duration
	for _, t := range bin {
		listening = append(listening, t.listening)
		ready = append(ready, t.ready)
	}
	fmt.Fprintf(r.out, "\n## Start to ready on the embedded store (%d starts each)\n\n", len(bin))
	fmt.Fprintln(r.out, "| measure | min | median | max |")
	fmt.Fprintln(r.out, "|---|---:|---:|---:|")
	row := func(name string, ds []time.Duration) {
		fmt.Fprintf(r.out, "| %s | %s | %s | %s |\n", name, ms(percentile(ds, 0.0001)), ms(percentile(ds, 50)), ms(percentile(ds, 100)))
	}
	row("binary: exec → \"listening\" log line", listening)
	row("**binary: exec → first 200 from /readyz**", ready)
	row("in process: store.Open … handlers.New, listen → /readyz 200", inProcess)
	med := percentile(ready, 50)
	r.target("start to ready, embedded store (median of binary starts)", ms(med), "< 100 ms", med < 100*time.Millisecond)
}

func (r *report) summary() {
	if len(r.targets) == 0 {
		return
	}
	fmt.Fprintln(r.out, "\n## Targets")
	fmt.Fprintln(r.out, "\n| target | measured | limit | met |")
	fmt.Fprintln(r.out, "|---|---:|---:|---|")
	for _, t := range r.targets {
		fmt.Fprintf(r.out, "| %s | %s | %s | %s |\n", t[0], t[1], t[2], t[3])
	}
}
