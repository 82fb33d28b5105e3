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
// (stderr), then the table: every figure of every target, the
// ratios and whether each target is met.
type report struct {
	out, progress io.Writer
	res           *results
	startup       []time.Duration
}

// results are the figures the final table is made of.
type results struct {
	inProcess, redisKnown         bool
	config                        map[string]*configTally
	seq, c4, shops8, shop1        map[string]*regTally
	replicas                      map[string]*regTally
	yardstick                     *target
	shop1Accounts                 int64
	shop1ClientIDs                int
	sameShop                      *sameShopResult
	wave                          *waveResult
	accounts                      *accountsResult
	rssPeer, rssService           int64
	logLines, logBytes            int64
	redisPerAccount               float64
	redisPerAccountOK, redisAsked bool
}

func (r *report) progressf(format string, args ...any) {
	fmt.Fprintf(r.progress, "loadtest: "+format+"\n", args...)
}

func (r *report) note(s string) { fmt.Fprintln(r.out, s) }

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
	load := "unknown"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	fmt.Fprintf(r.out, "# loadtest %s\n\n", time.Now().UTC().Format(time.DateTime+" UTC"))
	fmt.Fprintf(r.out, "machine: %d CPUs (GOMAXPROCS %d), %s, %s, %s %s/%s; load average at start %s\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), cpu, kernel, runtime.Version(), runtime.GOOS, runtime.GOARCH, load)
	fmt.Fprintf(r.out, "command: loadtest %s\n", strings.Join(os.Args[1:], " "))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d.Nanoseconds())/1000) }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func per(d time.Duration, n int) time.Duration {
	if n == 0 {
		return 0
	}
	return d / time.Duration(n)
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func (r *report) configResult(o options, c map[string]*configTally, targets []*target) {
	fmt.Fprintf(r.out, "\n## GET /config (%d-byte reply from the service, %d connections, %d rounds of ≤%d requests or ≤%s per target, order rotated each round)\n\n",
		o.configSize, o.conc, o.rounds, o.configReqs, o.roundDur)
	fmt.Fprintln(r.out, "| server | requests | failed | req/s | p50 | p99 | server CPU per request |")
	fmt.Fprintln(r.out, "|---|---:|---:|---:|---:|---:|---:|")
	for _, t := range targets {
		x := c[t.key]
		fmt.Fprintf(r.out, "| %s | %d | %d | %.0f | %s | %s | %s |\n", t.name, x.done, x.failed, rate(x.done, x.elapsed),
			ms(percentile(x.latency, 50)), ms(percentile(x.latency, 99)), us(per(x.cpu, x.done)))
	}
	bare, svc := c["bare"], c["service"]
	var rounds []string
	for i := range min(len(bare.runs), len(svc.runs)) {
		rounds = append(rounds, fmt.Sprintf("%.2f", ratio(rate(svc.runs[i].Done, svc.runs[i].Elapsed), rate(bare.runs[i].Done, bare.runs[i].Elapsed))))
	}
	fmt.Fprintf(r.out, "\nthroughput service/bare per round: %s\n", strings.Join(rounds, ", "))
}

func (r *report) registerResult(spec regSpec, tallies map[string]*regTally, targets []*target, res *results) {
	fmt.Fprintf(r.out, "\n## POST /register, %s (%d concurrent; rounds of ≤%d registers or ≤1 round-duration per target, alternating)\n\n", spec.title, spec.conc, spec.perRound)
	fmt.Fprintln(r.out, "| server | registers | failed | registers/s | CRM calls each | server CPU each | Redis CPU each | total p50 | total p99 | CRM's own p50 | beyond the CRM p50 | beyond the CRM p99 | max |")
	fmt.Fprintln(r.out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, t := range targets {
		x := tallies[t.key]
		redisCPU := "–"
		if res.redisKnown {
			redisCPU = us(per(x.redisCPU, x.done))
		}
		fmt.Fprintf(r.out, "| %s | %d | %d | %.0f | %.2f | %s | %s | %s | %s | %s | %s | %s | %s |\n", t.name, x.done, x.failed, rate(x.done, x.elapsed),
			ratio(float64(x.crmCalls), float64(x.timed)), us(per(x.cpu, x.done)), redisCPU,
			ms(percentile(x.total, 50)), ms(percentile(x.total, 99)), ms(percentile(x.crm, 50)),
			ms(percentile(x.over, 50)), ms(percentile(x.over, 99)), ms(percentile(x.over, 100)))
	}
	if x := tallies["service"]; x.traced > 0 {
		fmt.Fprintf(r.out, "\nservice in process: %.2f Redis round trips per register\n", ratio(float64(x.redisTrips), float64(x.traced)))
	}
	if spec.title == "8 clients, one shop" {
		fmt.Fprintf(r.out, "\nthe service's store gained %d account(s) for the shop; the fake CRM saw %d distinct clientId(s) from the service\n", res.shop1Accounts, res.shop1ClientIDs)
	}
}

func (r *report) sameShopResult(s sameShopResult) {
	fmt.Fprintf(r.out, "\n## Same shop (issue 12): %d clients, %d registers of one new shop with one key, at the service\n\n", s.conc, s.sent)
	fmt.Fprintf(r.out, "%d done in %s (%.0f/s), **%d failed**; accounts added **%d**; distinct clientIds the CRM saw **%d**; CRM calls %d for the %d registers (past the per-(shop, key) bound a register is answered from the stored state)\n",
		s.done, s.elapsed.Round(time.Millisecond), rate(s.done, s.elapsed), s.failed, s.accountsAdded, s.clientIDs, s.crmCalls, s.sent)
	if s.first != nil {
		fmt.Fprintf(r.out, "\nfirst failure: %v\n", s.first)
	}
}

type accountsResult struct {
	accounts int64
	classes  map[string]*keyClass
	note     string
	rss      [][2]string
}

func (r *report) accountsResult(a accountsResult) {
	fmt.Fprintf(r.out, "\n## Accounts: Redis memory\n\n")
	if a.note != "" {
		fmt.Fprintln(r.out, a.note)
	} else {
		fmt.Fprintf(r.out, "MEMORY USAGE (SAMPLES 0) over every key of the service's prefix, %d accounts:\n\n", a.accounts)
		fmt.Fprintln(r.out, "| keys | count | bytes | bytes per account |")
		fmt.Fprintln(r.out, "|---|---:|---:|---:|")
		kinds := make([]string, 0, len(a.classes))
		for k := range a.classes {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		var own, shared, stream, limits int64
		for _, k := range kinds {
			c := a.classes[k]
			fmt.Fprintf(r.out, "| %s | %d | %d | %.0f |\n", k, c.Keys, c.Bytes, float64(c.Bytes)/float64(max(1, a.accounts)))
			switch k {
			case "acct", "shop", "client":
				own += c.Bytes
			case "events":
				stream += c.Bytes
			case "ratelimit":
				limits += c.Bytes
			default:
				shared += c.Bytes
			}
		}
		p := func(b int64) float64 { return float64(b) / float64(max(1, a.accounts)) }
		fmt.Fprintf(r.out, "\nper account: own keys (acct, shop, client) %.0f B + indexes and sets %.0f B = **%.0f B**; the event stream (capped, not per account) adds %.0f B at this count; the limits' keys (ratelimit: one per recent (shop, key) pair and failing address, gone within a minute) %.0f B\n",
			p(own), p(shared), p(own+shared), p(stream), p(limits))
		r.res.redisAsked, r.res.redisPerAccount = true, p(own+shared)
		r.res.redisPerAccountOK = a.accounts > 0 && p(own+shared) <= 2048
	}
	for _, x := range a.rss {
		fmt.Fprintf(r.out, "\nRSS of %s after the fill: %s", x[0], x[1])
	}
	fmt.Fprintln(r.out)
}

func (r *report) startupResult(bin []startupTiming) {
	var listening, ready []time.Duration
	for _, t := range bin {
		listening = append(listening, t.listening)
		ready = append(ready, t.ready)
	}
	fmt.Fprintf(r.out, "\n## Start to ready on the embedded store (%d starts of the binary)\n\n", len(bin))
	fmt.Fprintln(r.out, "| measure | min | median | max |")
	fmt.Fprintln(r.out, "|---|---:|---:|---:|")
	row := func(name string, ds []time.Duration) {
		fmt.Fprintf(r.out, "| %s | %s | %s | %s |\n", name, ms(percentile(ds, 0.0001)), ms(percentile(ds, 50)), ms(percentile(ds, 100)))
	}
	row("exec → \"listening\" log line", listening)
	row("**exec → first 200 from /readyz**", ready)
	r.startup = ready
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// summary prints the table from whatever phases ran.
func (r *report) summary() {
	res := r.res
	if res == nil && r.startup == nil {
		return
	}
	if res == nil {
		res = &results{}
	}
	fmt.Fprintln(r.out, "\n## Targets (every figure from this run)")
	fmt.Fprintln(r.out, "\n| what | bare net/http | minimal peer | simpleconnect | ratio | target | met |")
	fmt.Fprintln(r.out, "|---|---:|---:|---:|---:|---|---|")
	row := func(what, bare, peer, svc, ratio, target, met string) {
		fmt.Fprintf(r.out, "| %s | %s | %s | %s | %s | %s | %s |\n", what, bare, peer, svc, ratio, target, met)
	}
	cpuNote := ""
	if res.inProcess {
		cpuNote = " (in process: includes the load generator, not judged)"
	}
	if s, p := res.seq["service"], res.seq["peer"]; s != nil && p != nil {
		sc, pc := per(s.cpu, s.done), per(p.cpu, p.done)
		x := ratio(float64(sc), float64(pc))
		row("server CPU per sequential register"+cpuNote, "–", us(pc), us(sc), fmt.Sprintf("%.2f×", x), "≤ 1.5× the peer", judged(!res.inProcess, x <= 1.5 && s.done > 0 && s.failed == 0))
		s50, s99, p50, p99 := percentile(s.total, 50), percentile(s.total, 99), percentile(p.total, 50), percentile(p.total, 99)
		row("register p50 / p99, sequential", "–", ms(p50)+" / "+ms(p99), ms(s50)+" / "+ms(s99),
			fmt.Sprintf("%.2f× / %.2f×", ratio(float64(s50), float64(p50)), ratio(float64(s99), float64(p99))), "–", "–")
		o99 := percentile(s.over, 99)
		row("register p99 beyond the fake CRM's own time, sequential", "–", ms(percentile(p.over, 99)), ms(o99), "–", "< 5 ms", yes(o99 < 5*time.Millisecond && len(s.over) > 0))
	}
	if s, y := res.seq["service"], res.seq["peer-rt"]; s != nil && y != nil {
		sc, yc := per(s.cpu, s.done), per(y.cpu, y.done)
		row("… the same against a peer making the service's round trips (2 CRM calls, 3 Redis round trips)", "–", us(yc), us(sc),
			fmt.Sprintf("%.2f×", ratio(float64(sc), float64(yc))), "(yardstick)", "–")
	}
	if s, p := res.c4["service"], res.c4["peer"]; s != nil && p != nil {
		o99 := percentile(s.over, 99)
		row("register p99 beyond the fake CRM's own time, 4 concurrent", "–", ms(percentile(p.over, 99)), ms(o99), "–", "< 5 ms", yes(o99 < 5*time.Millisecond && len(s.over) > 0))
	}
	if s, p := res.shops8["service"], res.shops8["peer"]; s != nil && p != nil {
		x := medianRatio(s, p)
		row("registers/s, 8 clients, 8 shops (ratio: median of the rounds')", "–", fmt.Sprintf("%.0f", rate(p.done, p.elapsed)), fmt.Sprintf("%.0f, %d failed", rate(s.done, s.elapsed), s.failed),
			fmt.Sprintf("%.2f× (over all %.2f×)", x, ratio(rate(s.done, s.elapsed), rate(p.done, p.elapsed))), "≥ 0.6× the peer", yes(x >= 0.6 && s.failed == 0))
	}
	if s, y := res.shops8["service"], res.shops8["peer-rt"]; s != nil && y != nil {
		row("… the same against a peer making the service's round trips", "–", fmt.Sprintf("%.0f", rate(y.done, y.elapsed)), fmt.Sprintf("%.0f", rate(s.done, s.elapsed)),
			fmt.Sprintf("%.2f×", medianRatio(s, y)), "(yardstick)", "–")
	}
	if s, p := res.shop1["service"], res.shop1["peer"]; s != nil && p != nil {
		x := medianRatio(s, p)
		row("registers/s, 8 clients, one shop (ratio: median of the rounds')", "–", fmt.Sprintf("%.0f, %d failed", rate(p.done, p.elapsed), p.failed),
			fmt.Sprintf("%.0f, **%d refused**; %d account, %d clientId", rate(s.done, s.elapsed), s.failed, res.shop1Accounts, res.shop1ClientIDs),
			fmt.Sprintf("%.2f× (over all %.2f×)", x, ratio(rate(s.done, s.elapsed), rate(p.done, p.elapsed))), "≥ 0.3× the peer, 0 refused", yes(x >= 0.3 && s.failed == 0 && res.shop1Accounts == 1 && res.shop1ClientIDs == 1))
	}
	if x := res.replicas; x != nil && x["replicas"] != nil && x["service"] != nil {
		p, one := x["replicas"], x["service"]
		y := medianRatio(p, one)
		row("registers/s, 8 clients, one shop, 2 replicas vs 1", "–", "–",
			fmt.Sprintf("%.0f vs %.0f, %d refused; p99 %s vs %s", rate(p.done, p.elapsed), rate(one.done, one.elapsed), p.failed+one.failed, ms(percentile(p.total, 99)), ms(percentile(one.total, 99))),
			fmt.Sprintf("%.2f×", y), "no cliff, 0 refused", yes(y >= 0.5 && p.failed+one.failed == 0))
	}
	if c := res.config; c != nil {
		b, p, s := c["bare"], c["peer"], c["service"]
		bc, pc, sc := per(b.cpu, b.done), per(p.cpu, p.done), per(s.cpu, s.done)
		x := ratio(float64(sc), float64(bc))
		row("server CPU per `GET /config`"+cpuNote, us(bc), fmt.Sprintf("%s (%.2f×)", us(pc), ratio(float64(pc), float64(bc))), us(sc),
			fmt.Sprintf("%.2f× bare", x), "≤ 1.2× bare", judged(!res.inProcess, x <= 1.2 && s.failed == 0))
		br, pr, sr := rate(b.done, b.elapsed), rate(p.done, p.elapsed), rate(s.done, s.elapsed)
		y := medianRoundRatio(s.runs, b.runs)
		row("`GET /config` throughput, 8 connections (ratio: median of the rounds' ratios)", fmt.Sprintf("%.0f/s", br), fmt.Sprintf("%.0f/s (%.2f×)", pr, medianRoundRatio(p.runs, b.runs)), fmt.Sprintf("%.0f/s", sr),
			fmt.Sprintf("%.2f× bare (over all rounds %.2f×)", y, ratio(sr, br)), "≥ 0.9× bare", yes(y >= 0.9 && s.failed == 0))
	}
	if res.rssPeer > 0 && res.rssService > 0 {
		x := ratio(float64(res.rssService), float64(res.rssPeer))
		row("peak RSS (VmHWM) over the whole run", "–", mib(res.rssPeer), mib(res.rssService), fmt.Sprintf("%.2f×", x), "≤ 1.5× the peer", yes(x <= 1.5))
	}
	if s := res.sameShop; s != nil {
		row(fmt.Sprintf("same shop, %d clients × %d registers, one key (issue 12)", s.conc, s.sent/max(1, s.conc)), "–", "–",
			fmt.Sprintf("%d failed, %d account, %d clientId", s.failed, s.accountsAdded, s.clientIDs), "–", "0 failed, 1 account, 1 clientId",
			yes(s.failed == 0 && s.done == s.sent && s.accountsAdded == 1 && s.clientIDs == 1))
	}
	if w := res.wave; w != nil {
		row(fmt.Sprintf("valid requests refused in a CRM wave (%d registers + %d callbacks, one address)", w.shops, w.calls), "–", "–",
			fmt.Sprintf("%d (failures refused: %d of %d)", w.refused, w.failingRefused, w.failing), "–", "0", yes(w.refused == 0))
	}
	if len(r.startup) > 0 {
		med := percentile(r.startup, 50)
		row("start to ready, embedded store (median)", "–", "–", ms(med), "–", "< 100 ms", yes(med < 100*time.Millisecond))
	}
	if res.redisAsked {
		row("Redis per account (own keys + indexes)", "–", "–", fmt.Sprintf("%.0f B", res.redisPerAccount), "–", "≤ 2048 B", yes(res.redisPerAccountOK))
	}
	if res.logLines > 0 {
		fmt.Fprintf(r.out, "\nthe service wrote %d log lines (%.1f MiB) to its log file during the run\n", res.logLines, float64(res.logBytes)/(1<<20))
	}
}

// medianRoundRatio is the median over rounds of a's throughput over b's in
// the same round: a burst of someone else's load on a shared machine moves
// one round, not the figure.
func medianRoundRatio(a, b []run) float64 {
	var xs []float64
	for i := range min(len(a), len(b)) {
		xs = append(xs, ratio(rate(a[i].Done, a[i].Elapsed), rate(b[i].Done, b[i].Elapsed)))
	}
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return xs[len(xs)/2]
}

func judged(judge, ok bool) string {
	if !judge {
		return "–"
	}
	return yes(ok)
}
