package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
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

// bareConfig is the limit /config is held to: a bare net/http handler
// writing the same bytes with the same Content-Type, its route checked.
func bareConfig(body []byte, contentType string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/config" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
}

// startBaseline serves bareConfig on loopback with the service's server
// settings.
func startBaseline(body []byte, contentType string) (url string, stop func(), err error) {
	srv := &http.Server{
		Handler: bareConfig(body, contentType), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second,
		WriteTimeout: 25 * time.Second, IdleTimeout: 90 * time.Second, MaxHeaderBytes: 16 << 10,
		ErrorLog: log.New(io.Discard, "", 0),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// getter GETs url and expects 200 with want bytes.
func getter(client *http.Client, url string, want int) func(context.Context, int) (time.Duration, error) {
	return func(ctx context.Context, _ int) (time.Duration, error) {
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
		if err == nil && (resp.StatusCode != http.StatusOK || int(n) != want) {
			err = errUnexpected
		}
		return d, err
	}
}

func phaseConfig(ctx context.Context, o options, r *report, svc *service) error {
	probe := newClient(1)
	resp, err := probe.Get(svc.URL + "/config")
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("service /config: status %d, %v", resp.StatusCode, err)
	}
	baseURL, stop, err := startBaseline(body, resp.Header.Get("Content-Type"))
	if err != nil {
		return err
	}
	defer stop()

	type target struct {
		key  string // for -config-target
		name string
		do   func(context.Context, int) (time.Duration, error)
		runs []run
	}
	targets := []*target{
		{key: "baseline", name: "bare net/http, same bytes", do: getter(newClient(o.conc), baseURL+"/config", len(body))},
		{key: "service", name: "service (echo, all middleware)", do: getter(newClient(o.conc), svc.URL+"/config", len(body))},
	}
	for _, t := range targets { // warm up connections, pools and caches
		if o.configTarget != "both" && t.key != o.configTarget {
			continue
		}
		drive(ctx, o.conc, 2000, 5*time.Second, t.do)
	}
	for round := range o.rounds {
		order := []*target{targets[0], targets[1]}
		if round%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, t := range order {
			if o.configTarget != "both" && t.key != o.configTarget {
				continue
			}
			res := drive(ctx, o.conc, o.configReqs, o.configDur, t.do)
			t.runs = append(t.runs, res)
			r.progressf("config round %d %-32s %7.0f req/s", round+1, t.name, float64(res.Done)/res.Elapsed.Seconds())
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if o.configTarget != "both" {
		return nil // one side alone: a profile, not a comparison
	}
	r.configResult(o, len(body), targets[0].name, targets[0].runs, targets[1].name, targets[1].runs)
	return nil
}
