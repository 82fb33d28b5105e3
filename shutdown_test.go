package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/verify"
)

// process is the real binary, started with an environment, its JSON log
// lines delivered on a channel and kept in order.
type process struct {
	cmd   *exec.Cmd
	lines chan map[string]any
	addr  string

	mu       sync.Mutex
	all      []map[string]any // every line, in the order written
	readDone chan struct{}    // closed once stderr reached its end
}

func startProcess(t *testing.T, env ...string) *process {
	t.Helper()
	cmd := exec.Command(buildBinary(t))
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "LISTEN_ADDR=127.0.0.1:0", "LOG_FORMAT=json"}, env...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	p := &process{cmd: cmd, lines: make(chan map[string]any, 1000), readDone: make(chan struct{})}
	go func() {
		defer close(p.readDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				p.mu.Lock()
				p.all = append(p.all, line)
				p.mu.Unlock()
				p.lines <- line
			}
		}
		close(p.lines)
	}()
	line := p.waitFor(t, "listening")
	addr, ok := line["addr"].(string)
	require.True(t, ok, "the listening line names its address: %v", line)
	p.addr = addr
	require.NotEmpty(t, p.addr)
	return p
}

// messages returns the message of every line written, in order, once the
// process has ended and its stderr is read to the end.
func (p *process) messages(t *testing.T) []string {
	t.Helper()
	select {
	case <-p.readDone:
	case <-time.After(30 * time.Second):
		t.Fatal("stderr did not end")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, l := range p.all {
		msg, _ := l["msg"].(string)
		if msg == "request" {
			route, _ := l["route"].(string)
			msg += " " + route
		}
		out = append(out, msg)
	}
	return out
}

// waitFor returns the first log line with this message (bounded, so a
// broken build fails instead of hanging).
func (p *process) waitFor(t *testing.T, msg string) map[string]any {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			require.True(t, ok, "the process ended before logging %q", msg)
			if line["msg"] == msg {
				return line
			}
		case <-timeout:
			t.Fatalf("no %q log line", msg)
		}
	}
}

func TestSIGTERMFinishesTheRegisterInFlightAndExitsZero(t *testing.T) {
	gate := make(chan struct{})
	arrived := make(chan struct{}, 1)
	fake := crmtest.New(t,
		crmtest.Edit("key-slow", crmtest.After(gate, crmtest.OK())),
		crmtest.OnCall(func(c crmtest.Call) {
			if strings.HasSuffix(c.Path, "/edit") {
				arrived <- struct{}{}
			}
		}),
	)
	p := startProcess(t, "MODULE_CODE=demo", "MODULE_SECRETS=dev", "CRM_ALLOW_INSECURE=true", "CRM_ALLOWED_HOSTS=127.0.0.1", "SHUTDOWN_TIMEOUT=30s")
	base := "http://" + p.addr

	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		reg, err := json.Marshal(map[string]string{"apiKey": "key-slow", "systemUrl": fake.URL, "token": verify.Sign("dev", "key-slow")})
		if err != nil {
			done <- result{err: err}
			return
		}
		resp, err := http.PostForm(base+"/register", url.Values{"register": {string(reg)}})
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{body: string(b), err: err}
	}()
	<-arrived // the register is in flight, waiting on the CRM

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	p.waitFor(t, "shutting down: finishing requests in flight")
	// The line comes first, then Shutdown closes the listener: new
	// connections are refused while the register is still in flight.
	fresh := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	assert.Eventually(t, func() bool {
		resp, err := fresh.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err != nil
	}, 10*time.Second, 10*time.Millisecond, "no new connections once shutdown began")

	close(gate) // the CRM answers
	r := <-done
	require.NoError(t, r.err)
	assert.JSONEq(t, `{"success":true,"accountUrl":"http://localhost:8080/account"}`, r.body, "the register in flight completed")

	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	select {
	case err := <-exited:
		require.NoError(t, err, "exit status 0")
	case <-time.After(30 * time.Second):
		t.Fatal("the process did not exit")
	}
	assert.Equal(t, 0, p.cmd.ProcessState.ExitCode())

	// The log tells the story in the order it happened, each step once.
	msgs := p.messages(t)
	order := []string{"listening", "shutting down: finishing requests in flight", "request /register", "stopped"}
	at := make([]int, len(order))
	for i, want := range order {
		at[i] = slices.Index(msgs, want)
		require.NotEqual(t, -1, at[i], "%q is logged; got %q", want, msgs)
		assert.Equal(t, 1, count(msgs, want), "%q is logged once; got %q", want, msgs)
		if i > 0 {
			assert.Less(t, at[i-1], at[i], "%q comes before %q; got %q", order[i-1], want, msgs)
		}
	}
}

func TestABadVariableStopsTheStartWithOneLineNamingIt(t *testing.T) {
	bin := buildBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = []string{"MODULE_CODE=demo", "MODULE_SECRETS=dev", "CRM_TIMEOUT=s3cr3t-looking-value", "REDIS_URL=redis://:hunter2@127.0.0.1:1/0"}
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	assert.NotEqual(t, 0, cmd.ProcessState.ExitCode())
	text := string(out)
	assert.Contains(t, text, "CRM_TIMEOUT")
	assert.NotContains(t, text, "s3cr3t-looking-value")
	assert.NotContains(t, text, "hunter2")
}

func count(xs []string, x string) int {
	n := 0
	for _, y := range xs {
		if y == x {
			n++
		}
	}
	return n
}
