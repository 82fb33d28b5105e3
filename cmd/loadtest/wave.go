package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// waveResult is what the wave phase counted.
type waveResult struct {
	shops, calls, conc       int
	regsDone, callsDone      int
	refused                  int
	failing, failingRefused  int64
	elapsed, regsEl, callsEl time.Duration
}

// phaseWave plays a busy day of the CRM, which sends every shop's calls
// from a few addresses (here: this process, one address): -wave-shops
// distinct shops connect, then -wave-callbacks activity callbacks arrive
// for them, with the service's limits at their defaults. Beside them the
// same address sends failing callbacks (accounts that are gone), more than
// its failure budget. No valid request may be refused; the failures past
// the budget are.
func phaseWave(ctx context.Context, o options, r *report, g *registrar, svc *target) (*waveResult, error) {
	base := svc.nextShop
	svc.nextShop += o.waveShops
	if err := g.fake.ensure(ctx, svc.nextShop); err != nil {
		return nil, err
	}
	client := newClient(o.waveConc)
	res := &waveResult{shops: o.waveShops, calls: o.waveCalls, conc: o.waveConc}
	var failing, failRefused atomic.Int64
	sendFailure := func(ctx context.Context) {
		n := failing.Add(1)
		reply, err := postActivity(ctx, client, svc.url, fmt.Sprintf("gone-%s-%06d", g.runID, n), false)
		if err == nil && strings.Contains(reply, "Too many failed requests") {
			failRefused.Add(1)
		}
	}

	start := time.Now()
	var regFirst firstError
	regs := drive(ctx, o.waveConc, o.waveShops, time.Minute, func(ctx context.Context, w, i int) (time.Duration, error) {
		d, _, err := g.send(ctx, svc, w, g.fake.shop(base+i), g.newKey(svc))
		regFirst.keep(ctx, err)
		if i%6 == 0 {
			sendFailure(ctx)
		}
		return d, err
	})
	regFirst.report(r, "first refused register of the wave")

	clientIDs := make([]string, o.waveShops)
	for i := range clientIDs {
		ids, err := g.fake.clientIDs(ctx, g.fake.shop(base+i), svc.code)
		if err != nil {
			return nil, err
		}
		if len(ids) == 1 {
			clientIDs[i] = ids[0]
		}
	}
	var cbFirst firstError
	cbs := drive(ctx, o.waveConc, o.waveCalls, time.Minute, func(ctx context.Context, _, i int) (time.Duration, error) {
		if i%10 == 0 {
			sendFailure(ctx)
		}
		id := clientIDs[i%len(clientIDs)]
		if id == "" {
			cbFirst.keep(ctx, fmt.Errorf("%w: no clientId for shop %d", errUnexpected, i%len(clientIDs)))
			return 0, errUnexpected
		}
		t0 := time.Now()
		reply, err := postActivity(ctx, client, svc.url, id, i/len(clientIDs)%2 == 0)
		if err == nil && !strings.Contains(reply, `"success":true`) {
			err = fmt.Errorf("%w: %s", errUnexpected, reply)
		}
		cbFirst.keep(ctx, err)
		return time.Since(t0), err
	})
	cbFirst.report(r, "first refused activity callback of the wave")
	if _, err := g.fake.times(ctx); err != nil { // drop what the wave left
		return nil, err
	}
	res.elapsed, res.regsEl, res.callsEl = time.Since(start), regs.Elapsed, cbs.Elapsed
	res.regsDone, res.callsDone = regs.Done, cbs.Done
	res.refused = regs.Failed + cbs.Failed + (o.waveShops - regs.Done) + (o.waveCalls - cbs.Done)
	res.failing, res.failingRefused = failing.Load(), failRefused.Load()
	r.waveResult(res, regs.Failed+(o.waveShops-regs.Done), cbs.Failed+(o.waveCalls-cbs.Done))
	return res, nil
}

func (r *report) waveResult(w *waveResult, regsRefused, callsRefused int) {
	fmt.Fprintf(r.out, "\n## CRM wave: %d registers (distinct shops) + %d activity callbacks from one address\n\n", w.shops, w.calls)
	fmt.Fprintf(r.out, "limits at their defaults; done in %s (registers %s, callbacks %s) at concurrency %d\n\n",
		w.elapsed.Round(time.Millisecond), w.regsEl.Round(time.Millisecond), w.callsEl.Round(time.Millisecond), w.conc)
	fmt.Fprintf(r.out, "| requests | sent | refused or failed |\n|---|---:|---:|\n")
	fmt.Fprintf(r.out, "| registers (valid) | %d | %d |\n", w.regsDone, regsRefused)
	fmt.Fprintf(r.out, "| activity callbacks (known clientIds) | %d | %d |\n", w.callsDone, callsRefused)
	fmt.Fprintf(r.out, "| failing callbacks (unknown clientIds), same address | %d | %d answered \"too many failed requests\" |\n", w.failing, w.failingRefused)
	fmt.Fprintf(r.out, "\nvalid requests refused: %d\n", w.refused)
}

// postActivity sends an activity callback and returns the reply's body.
func postActivity(ctx context.Context, client *http.Client, service, clientID string, active bool) (string, error) {
	activity, _ := json.Marshal(map[string]bool{"active": active, "freeze": false})
	body := url.Values{"clientId": {clientID}, "activity": {string(activity)}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, service+"/activity", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%w: status %d", errUnexpected, resp.StatusCode)
	}
	return string(b), err
}
