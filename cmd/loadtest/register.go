package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/verify"
)

// fakeClient talks to the fake CRM child's control address.
type fakeClient struct {
	proc  *child
	ctl   string
	http  *http.Client
	mu    sync.Mutex
	shops []string // host:port of shop i
}

func startFakeCRM(ctx context.Context, infoArray bool, logDir string, ordersDelay time.Duration) (*fakeClient, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	env := append(baseEnv(), childEnv+"=fake-crm")
	if infoArray {
		env = append(env, "LOADTEST_INFO_ARRAY=1")
	}
	if ordersDelay > 0 {
		env = append(env, "LOADTEST_ORDERS_DELAY="+ordersDelay.String())
	}
	p, err := startChild(ctx, "fake CRM", self, nil, env, filepath.Join(logDir, "fakecrm.log"))
	if err != nil {
		return nil, err
	}
	return &fakeClient{proc: p, ctl: "http://" + p.Addr, http: newClient(2)}, nil
}

func (f *fakeClient) get(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, f.ctl+path, nil)
	if err != nil {
		return err
	}
	resp, err := f.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("fake CRM %s: %d %s", path, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// shop returns shop i's host:port; ensure must have covered it.
func (f *fakeClient) shop(i int) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.shops[i]
}

// ensure makes the fake listen for shops 0..n-1.
func (f *fakeClient) ensure(ctx context.Context, n int) error {
	f.mu.Lock()
	have := len(f.shops)
	f.mu.Unlock()
	if n <= have {
		return nil
	}
	var shops []string
	if err := f.get(ctx, http.MethodPost, "/shops?n="+strconv.Itoa(n), &shops); err != nil {
		return err
	}
	f.mu.Lock()
	f.shops = shops
	f.mu.Unlock()
	return nil
}

// times drains the fake's own time per API key.
func (f *fakeClient) times(ctx context.Context) (map[string]crmTime, error) {
	var t map[string]crmTime
	return t, f.get(ctx, http.MethodGet, "/times", &t)
}

// clientIDs lists the clientIds the edits for one shop and module carried.
func (f *fakeClient) clientIDs(ctx context.Context, shop, code string) ([]string, error) {
	var ids []string
	return ids, f.get(ctx, http.MethodGet, "/clientids?host="+url.QueryEscape(shop)+"&code="+url.QueryEscape(code), &ids)
}

// registrar sends registers as the CRM marketplace does: a form with one
// field "register" holding {apiKey, systemUrl, token}.
type registrar struct {
	runID string
	fake  *fakeClient
	keys  atomic.Int64
}

// newKey is a fresh API key: the CRM issues one per connection, and the
// fake CRM times its work by key.
func (g *registrar) newKey(t *target) string {
	return fmt.Sprintf("lt-%s-%s-%d", g.runID, t.key, g.keys.Add(1))
}

// send registers shop (host:port) with apiKey at t and returns the latency
// as the marketplace sees it, from the request sent to the reply read.
func (g *registrar) send(ctx context.Context, t *target, worker int, shop, apiKey string) (time.Duration, *crmTrace, error) {
	payload, _ := json.Marshal(map[string]string{
		"apiKey": apiKey, "systemUrl": "http://" + shop, "token": verify.Sign(redact.Secret(t.secret), redact.Secret(apiKey)),
	})
	body := url.Values{"register": {string(payload)}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.urlFor(worker)+"/register", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Request-ID", apiKey)
	start := time.Now()
	resp, err := t.client.Do(req)
	if err != nil {
		return time.Since(start), nil, err
	}
	reply, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	d := time.Since(start)
	var tr *crmTrace
	if t.svc != nil {
		tr, _ = t.svc.takeTrace(apiKey)
	}
	if err == nil && (resp.StatusCode != http.StatusOK || !strings.Contains(string(reply), `"success":true`)) {
		err = fmt.Errorf("%w: %d %s", errUnexpected, resp.StatusCode, strings.TrimSpace(string(reply)))
	}
	return d, tr, err
}

// regTally is what one target did in one register phase, over its rounds.
type regTally struct {
	done, failed                   int
	elapsed, cpu, genCPU, redisCPU time.Duration
	total, crm, over               []time.Duration
	crmCalls, timed                int
	redisTrips, traced             int
	first                          error
	rates                          []float64 // registers/s of each round
}

// medianRatio is the median over rounds of a's registers/s over b's in the
// same round.
func medianRatio(a, b *regTally) float64 {
	var xs []float64
	for i := range min(len(a.rates), len(b.rates)) {
		xs = append(xs, ratio(a.rates[i], b.rates[i]))
	}
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// regSpec is one register phase.
type regSpec struct {
	title    string
	conc     int
	perRound int // registers per target per round
	// fixed: shops is called once per target for the whole phase, not
	// once per round.
	fixed bool
	// shops allocates the phase's shops for t and returns which one
	// worker's i-th register goes to (an index for fakeClient.shop).
	shops func(t *target) func(worker, i int) int
}

// newShops gives every register a shop never registered before.
func newShops(perRound int) func(t *target) func(worker, i int) int {
	return func(t *target) func(worker, i int) int {
		base := t.nextShop
		t.nextShop += perRound
		return func(_, i int) int { return base + i }
	}
}

// shopPerWorker gives each worker a shop of its own for the whole phase.
func shopPerWorker(conc int) func(t *target) func(worker, i int) int {
	return func(t *target) func(worker, i int) int {
		base := t.nextShop
		t.nextShop += conc
		return func(w, _ int) int { return base + w }
	}
}

// oneShop sends every register of the phase to one shop.
func oneShop(t *target) func(worker, i int) int {
	base := t.nextShop
	t.nextShop++
	return func(int, int) int { return base }
}

// runRegisterPhase drives the targets in alternating rounds (the order
// flips each round, so drift on a busy machine hits both) and tallies each.
func runRegisterPhase(ctx context.Context, o options, r *report, g *registrar, rc *redisProc, spec regSpec, targets []*target) (map[string]*regTally, error) {
	out := map[string]*regTally{}
	pickers := map[string]func(worker, i int) int{}
	for _, t := range targets {
		out[t.key] = &regTally{}
		if spec.fixed {
			pickers[t.key] = spec.shops(t) // fixed shops: allocated once for the phase
		}
	}
	for round := range o.rounds {
		order := append([]*target(nil), targets...)
		if round%2 == 1 {
			for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
				order[i], order[j] = order[j], order[i]
			}
		}
		for _, t := range order {
			pick := pickers[t.key]
			if pick == nil {
				pick = spec.shops(t) // new shops every round
			}
			if err := g.fake.ensure(ctx, t.nextShop); err != nil {
				return nil, err
			}
			tally := out[t.key]
			keys := make([]string, spec.perRound)
			failed := make([]bool, spec.perRound)
			traces := make([]*crmTrace, spec.perRound)
			cpu0, rcpu0 := t.cpu(), rc.cpu()
			res := drive(ctx, spec.conc, spec.perRound, o.roundDur, func(ctx context.Context, w, i int) (time.Duration, error) {
				key := g.newKey(t)
				keys[i] = key
				d, tr, err := g.send(ctx, t, w, g.fake.shop(pick(w, i)), key)
				traces[i] = tr
				if err != nil && ctx.Err() == nil {
					failed[i] = true
					if tally.first == nil {
						tally.first = err
					}
				}
				return d, err
			})
			tally.cpu += t.cpu() - cpu0
			tally.redisCPU += rc.cpu() - rcpu0
			tally.genCPU += res.CPU
			tally.done += res.Done
			tally.failed += res.Failed
			tally.elapsed += res.Elapsed
			tally.rates = append(tally.rates, rate(res.Done, res.Elapsed))
			times, err := g.fake.times(ctx)
			if err != nil {
				return nil, err
			}
			for i, d := range res.Latency {
				if d < 0 || failed[i] {
					continue
				}
				tally.total = append(tally.total, d)
				if ct, ok := times[keys[i]]; ok {
					crm := time.Duration(ct.Nanos)
					tally.crm = append(tally.crm, crm)
					tally.over = append(tally.over, d-crm)
					tally.crmCalls += ct.Calls
					tally.timed++
				}
				if tr := traces[i]; tr != nil {
					s := tr.sample()
					tally.redisTrips += s.redisTrips
					tally.traced++
				}
			}
			r.progressf("%s, round %d: %-14s %5d registers %6.0f/s, %d failed", spec.title, round+1, t.name, res.Done, float64(res.Done)/res.Elapsed.Seconds(), res.Failed)
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
		}
	}
	for _, t := range targets {
		if e := out[t.key].first; e != nil {
			r.progressf("%s: first failed register at %s: %v", spec.title, t.name, e)
		}
	}
	return out, nil
}

// sameShopCheck is issue 12's requirement, at the service: conc clients
// send n registers in all for one new shop, every one with the same key (a
// Connect clicked again and again): none may fail, and the shop must end
// with one account and one clientId.
type sameShopResult struct {
	conc, sent, done, failed int
	elapsed                  time.Duration
	accountsAdded            int64
	clientIDs                int
	crmCalls                 int
	first                    error
}

func sameShopCheck(ctx context.Context, g *registrar, rdb redis.UniversalClient, t *target, conc, n int) (sameShopResult, error) {
	res := sameShopResult{conc: conc, sent: n}
	shop := t.nextShop
	t.nextShop++
	if err := g.fake.ensure(ctx, t.nextShop); err != nil {
		return res, err
	}
	all := "{" + t.prefix + "}:idx:all"
	before, err := rdb.ZCard(ctx, all).Result()
	if err != nil {
		return res, err
	}
	key := g.newKey(t)
	var mu sync.Mutex
	run := drive(ctx, conc, n, 60*time.Second, func(ctx context.Context, w, _ int) (time.Duration, error) {
		d, _, err := g.send(ctx, t, w, g.fake.shop(shop), key)
		if err != nil {
			mu.Lock()
			if res.first == nil {
				res.first = err
			}
			mu.Unlock()
		}
		return d, err
	})
	res.done, res.failed, res.elapsed = run.Done, run.Failed, run.Elapsed
	after, err := rdb.ZCard(ctx, all).Result()
	if err != nil {
		return res, err
	}
	res.accountsAdded = after - before
	ids, err := g.fake.clientIDs(ctx, g.fake.shop(shop), t.code)
	if err != nil {
		return res, err
	}
	res.clientIDs = len(ids)
	times, err := g.fake.times(ctx)
	if err != nil {
		return res, err
	}
	res.crmCalls = times[key].Calls
	return res, nil
}
