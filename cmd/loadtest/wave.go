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

// waveBase numbers the wave's shops apart from the register phase's.
const waveBase = 1_000_000

// phaseWave plays a busy day of the CRM, which sends every shop's calls
// from a few addresses (here: this process, one address): -wave-shops
// distinct shops connect, then -wave-callbacks activity callbacks arrive
// for them, with the limits at their defaults. Beside them the same
// address sends failing callbacks (accounts that are gone), more than its
// failure budget. No valid request may be refused; the failures past the
// budget are.
func phaseWave(ctx context.Context, o options, r *report, svc *service) error {
	fake, err := startFakeCRM(ctx)
	if err != nil {
		return err
	}
	defer fake.Stop()
	u, _ := url.Parse(fake.URL)
	g := &registrar{svc: svc, client: newClient(o.waveConc), crmPort: u.Port(), runID: randomHex(4), secret: svc.Secret}

	var failing, failRefused atomic.Int64
	sendFailure := func(ctx context.Context) {
		n := failing.Add(1)
		reply, err := postActivity(ctx, g.client, svc.URL, fmt.Sprintf("gone-%s-%06d", g.runID, n), false)
		if err == nil && strings.Contains(reply, "Too many failed requests") {
			failRefused.Add(1)
		}
	}

	start := time.Now()
	var regFirst firstError
	regs := drive(ctx, o.waveConc, o.waveShops, time.Minute, func(ctx context.Context, i int) (time.Duration, error) {
		d, _, err := g.send(ctx, waveBase+i)
		regFirst.keep(ctx, err)
		if i%6 == 0 {
			sendFailure(ctx)
		}
		return d, err
	})
	regFirst.report(r, "first refused register of the wave")

	clientIDs := make([]string, o.waveShops)
	for i := range clientIDs {
		acc, err := svc.Store.FindBySystemURL(ctx, g.systemURL(waveBase+i))
		if err != nil {
			continue // its register failed, counted above
		}
		clientIDs[i] = acc.ClientID.Reveal()
	}
	var cbFirst firstError
	cbs := drive(ctx, o.waveConc, o.waveCalls, time.Minute, func(ctx context.Context, i int) (time.Duration, error) {
		if i%10 == 0 {
			sendFailure(ctx)
		}
		id := clientIDs[i%len(clientIDs)]
		if id == "" {
			cbFirst.keep(ctx, fmt.Errorf("%w: no clientId for shop %d", errUnexpected, i%len(clientIDs)))
			return 0, errUnexpected
		}
		t0 := time.Now()
		reply, err := postActivity(ctx, g.client, svc.URL, id, i/len(clientIDs)%2 == 0)
		if err == nil && !strings.Contains(reply, `"success":true`) {
			err = fmt.Errorf("%w: %s", errUnexpected, reply)
		}
		cbFirst.keep(ctx, err)
		return time.Since(t0), err
	})
	cbFirst.report(r, "first refused activity callback of the wave")
	elapsed := time.Since(start)

	refused := regs.Failed + cbs.Failed + (o.waveShops - regs.Done) + (o.waveCalls - cbs.Done)
	fmt.Fprintf(r.out, "\n## CRM wave: %d registers (distinct shops) + %d activity callbacks from one address\n\n", o.waveShops, o.waveCalls)
	fmt.Fprintf(r.out, "limits at their defaults; done in %s (registers %s, callbacks %s) at concurrency %d\n\n",
		elapsed.Round(time.Millisecond), regs.Elapsed.Round(time.Millisecond), cbs.Elapsed.Round(time.Millisecond), o.waveConc)
	fmt.Fprintf(r.out, "| requests | sent | refused or failed |\n|---|---:|---:|\n")
	fmt.Fprintf(r.out, "| registers (valid) | %d | %d |\n", regs.Done, regs.Failed+(o.waveShops-regs.Done))
	fmt.Fprintf(r.out, "| activity callbacks (known clientIds) | %d | %d |\n", cbs.Done, cbs.Failed+(o.waveCalls-cbs.Done))
	fmt.Fprintf(r.out, "| failing callbacks (unknown clientIds), same address | %d | %d answered \"too many failed requests\" |\n", failing.Load(), failRefused.Load())
	fmt.Fprintf(r.out, "\nvalid requests refused: %d\n", refused)
	r.target(fmt.Sprintf("valid requests refused in a CRM wave (%d registers + %d callbacks, one address)", o.waveShops, o.waveCalls),
		fmt.Sprint(refused), "0", refused == 0)
	return nil
}

// systemURL is shop i's address, as send builds it.
func (g *registrar) systemURL(i int) string {
	return fmt.Sprintf("http://shop-%06d.%s:%s", i, shopSuffix, g.crmPort)
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
