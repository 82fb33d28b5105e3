package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"syscall"
	"time"
)

// startupTiming is one start of the binary.
type startupTiming struct {
	listening time.Duration // exec to the "listening" log line
	ready     time.Duration // exec to the first 200 from /readyz
}

func phaseStartup(ctx context.Context, o options, bin string, r *report) error {
	var timings []startupTiming
	for range o.startups {
		t, err := startOnce(ctx, bin)
		if err != nil {
			return err
		}
		timings = append(timings, t)
	}
	r.startupResult(timings)
	return nil
}

// startOnce execs the binary on the embedded store with a minimal
// environment (no REDIS_URL, whatever this shell has), waits for its
// "listening" line and the first 200 from /readyz, then stops it with
// SIGTERM, as an orchestrator would.
func startOnce(ctx context.Context, bin string) (startupTiming, error) {
	cmd := exec.Command(bin)
	cmd.Env = append(baseEnv(), "MODULE_CODE=loadtest", "MODULE_SECRETS=loadtest-secret",
		"LISTEN_ADDR=127.0.0.1:0", "LOG_FORMAT=json")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return startupTiming{}, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return startupTiming{}, err
	}
	exited := make(chan struct{})
	addr := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stderr)
		found := false
		for s.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if !found && json.Unmarshal(s.Bytes(), &line) == nil && line.Msg == "listening" {
				found = true
				addr <- line.Addr
			}
		}
		close(addr)
	}()
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill() // this child only
			<-exited
		}
	}()

	var t startupTiming
	select {
	case a, ok := <-addr:
		if !ok {
			return t, errors.New("the service exited before listening")
		}
		t.listening = time.Since(start)
		if err := waitReady(ctx, "http://"+a+"/readyz", 10*time.Second); err != nil {
			return t, err
		}
		t.ready = time.Since(start)
		return t, nil
	case <-time.After(10 * time.Second):
		return t, errors.New("the service did not listen within 10s")
	case <-ctx.Done():
		return t, ctx.Err()
	}
}
