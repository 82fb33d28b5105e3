package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"
)

var errUnexpected = errors.New("unexpected reply")

// newClient is the load generator's HTTP client: keep-alive, one idle
// connection per worker, never a proxy.
func newClient(conc int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy: nil, MaxIdleConns: 2 * conc, MaxIdleConnsPerHost: conc, DisableCompression: true,
			IdleConnTimeout: 90 * time.Second,
		},
	}
}

// getter GETs url and expects 200 with want bytes.
func getter(client *http.Client, url string, want int) func(context.Context, int, int) (time.Duration, error) {
	return func(ctx context.Context, _, _ int) (time.Duration, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return time.Since(start), err
		}
		n, err := io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		d := time.Since(start)
		if err == nil && (resp.StatusCode != http.StatusOK || (want >= 0 && int(n) != want)) {
			err = errUnexpected
		}
		return d, err
	}
}

// configTally is what one target did over the /config rounds.
type configTally struct {
	runs         []run
	cpu          time.Duration // the target server's
	done, failed int
	elapsed      time.Duration
	latency      []time.Duration
}

// phaseConfig drives GET /config on every target in rounds, each round in
// another order (rotated), at the same concurrency, and tallies each.
func phaseConfig(ctx context.Context, o options, r *report, targets []*target) (map[string]*configTally, error) {
	out := map[string]*configTally{}
	do := map[string]func(context.Context, int, int) (time.Duration, error){}
	for _, t := range targets {
		out[t.key] = &configTally{}
		want := -1 // the peer answers its own bytes
		if t.key != "peer" {
			want = o.configSize
		}
		do[t.key] = getter(newClient(o.conc), t.url+"/config", want)
		drive(ctx, o.conc, 2000, 300*time.Millisecond, do[t.key]) // warm up connections, pools and caches
	}
	for round := range o.rounds {
		for j := range targets {
			t := targets[(round+j)%len(targets)]
			cpu0 := t.cpu()
			res := drive(ctx, o.conc, o.configReqs, o.roundDur, do[t.key])
			c := out[t.key]
			c.cpu += t.cpu() - cpu0
			c.runs = append(c.runs, res)
			c.done += res.Done
			c.failed += res.Failed
			c.elapsed += res.Elapsed
			c.latency = append(c.latency, res.samples()...)
			r.progressf("config round %d %-14s %7.0f req/s", round+1, t.name, float64(res.Done)/res.Elapsed.Seconds())
		}
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
	return out, nil
}
