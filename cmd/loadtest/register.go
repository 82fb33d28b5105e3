package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/verify"
)

// shopSuffix is the domain of the simulated shops: shop-000042.<suffix>,
// resolved to 127.0.0.1 by crmtest.LoopbackResolver only.
const shopSuffix = "loadtest.localhost"

// registrar sends registers for distinct shops: shop i has its own host,
// API key and token.
type registrar struct {
	svc     *service
	client  *http.Client
	crmPort string
	runID   string
	secret  string
}

func (g *registrar) send(ctx context.Context, i int) (time.Duration, *crmTrace, error) {
	apiKey := fmt.Sprintf("lt-%s-%06d", g.runID, i)
	payload, _ := json.Marshal(map[string]string{
		"apiKey":    apiKey,
		"systemUrl": fmt.Sprintf("http://shop-%06d.%s:%s", i, shopSuffix, g.crmPort),
		"token":     verify.Sign(redact.Secret(g.secret), redact.Secret(apiKey)),
	})
	body := url.Values{"register": {string(payload)}}.Encode()
	reqID := "lt-" + strconv.Itoa(i)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.svc.URL+"/register", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Request-ID", reqID)

	start := time.Now()
	resp, err := g.client.Do(req)
	if err != nil {
		return time.Since(start), nil, err
	}
	reply, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	d := time.Since(start)

	tr, _ := g.svc.takeTrace(reqID)
	if err == nil && (resp.StatusCode != http.StatusOK || !strings.Contains(string(reply), `"success":true`)) {
		err = fmt.Errorf("%w: %d %s", errUnexpected, resp.StatusCode, reply)
	}
	return d, tr, err
}

func phaseRegister(ctx context.Context, o options, r *report, svc *service) error {
	fake, err := startFakeCRM(ctx)
	if err != nil {
		return err
	}
	defer fake.Stop()
	u, _ := url.Parse(fake.URL)
	g := &registrar{svc: svc, client: newClient(max(slices.Max(o.registerConc), o.fillConc)), crmPort: u.Port(), runID: randomHex(4), secret: svc.Secret}

	// One Redis round trip, for scale: the limit of a register is the CRM's
	// time plus about this.
	rdb := svc.Store.Client()
	var pings []time.Duration
	for range 200 {
		start := time.Now()
		if err := rdb.Ping(ctx).Err(); err != nil {
			return err
		}
		pings = append(pings, time.Since(start))
	}
	r.redisRTT(pings)

	rssBefore, _, _ := rss()
	heapBefore := heapInUse()
	measured := 0 // shops registered so far: each register is a new shop
	if has(o.phases, "register") {
		for _, conc := range o.registerConc {
			samples := make([]registerSample, o.registers)
			var first firstError
			base := measured
			res := drive(ctx, conc, o.registers, o.registerDur, func(ctx context.Context, i int) (time.Duration, error) {
				d, tr, err := g.send(ctx, base+i)
				if tr != nil {
					samples[i] = tr.sample()
				}
				first.keep(ctx, err)
				return d, err
			})
			first.report(r, "first failed register")
			r.registerResult(conc, res, samples)
			measured += o.registers
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}

	if !has(o.phases, "accounts") {
		return nil
	}
	fill := max(0, o.accounts-measured)
	var first firstError
	res := drive(ctx, o.fillConc, fill, o.fillDur, func(ctx context.Context, i int) (time.Duration, error) {
		d, _, err := g.send(ctx, measured+i)
		first.keep(ctx, err)
		return d, err
	})
	first.report(r, "first failed register while filling")
	r.progressf("filled %d accounts in %s (%.0f registers/s at concurrency %d, %d failed)",
		res.Done, res.Elapsed.Round(time.Millisecond), float64(res.Done)/res.Elapsed.Seconds(), o.fillConc, res.Failed)
	rssAfter, peak, err := rss()
	if err != nil {
		return err
	}
	a := accountsResult{
		rssBefore: rssBefore, rssAfter: rssAfter, rssPeak: peak, heapBefore: heapBefore, heapAfter: heapInUse(),
		liveHeap: liveHeap(),
	}
	if o.memprofile != "" {
		if err := writeHeapProfile(o.memprofile); err != nil {
			return err
		}
	}
	if keys, err := scanKeys(ctx, rdb, svc.Prefix); err == nil { // miniredis can SCAN, not MEMORY USAGE
		for _, k := range keys {
			if strings.Contains(k, "}:acct:") {
				a.accounts++
			}
		}
	}
	if svc.Embedded {
		a.note = "the embedded store (miniredis) has no MEMORY USAGE: Redis memory per account not measured; set REDIS_URL. Its data lives in this process, so the RSS includes it."
	} else {
		a.classes, err = redisMemory(ctx, rdb, svc.Prefix)
		if err != nil {
			return fmt.Errorf("MEMORY USAGE: %w", err)
		}
	}
	r.accountsResult(a)
	return nil
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
