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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/verify"
)

// process is the real binary, started with an environment, its JSON log
// lines delivered on a channel.
type process struct {
	cmd   *exec.Cmd
	lines chan map[string]any
	addr  string
}

func startProcess(t *testing.T, env ...string) *process {
	t.Helper()
	bin := buildBinary(t)
	cmd := exec.Command(bin)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "LISTEN_ADDR=127.0.0.1:0", "LOG_FORMAT=json"}, env...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	p := &process{cmd: cmd, lines: make(chan map[string]any, 100)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil {
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
	p := startProcess(t, "MODULE_CODE=demo", "MODULE_SECRETS=dev", "CRM_ALLOW_INSECURE=true", "SHUTDOWN_TIMEOUT=30s")
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
	_, err := (&http.Client{Timeout: 2 * time.Second}).Get(base + "/healthz")
	assert.Error(t, err, "no new connections once shutdown began")

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
