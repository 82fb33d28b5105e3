package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/modulehub/simpleconnect/crm/crmtest"
)

// childEnv set to "fake-crm" makes this program the fake CRM child.
const childEnv = "LOADTEST_CHILD"

// serveFakeCRM is the child mode: the fake CRM of crm/crmtest on loopback,
// its URL on stdout, until stdin closes (the parent ended) or maxLife
// passes. It runs in its own process so that the calls it records
// neither count in the service's RSS nor compete for its heap.
func serveFakeCRM(stdin io.Reader, stdout io.Writer, maxLife time.Duration) error {
	fake, err := crmtest.Start("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer fake.Close()
	fmt.Fprintln(stdout, fake.URL)
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, stdin); close(done) }()
	select {
	case <-done:
	case <-time.After(maxLife):
	}
	return nil
}

// fakeCRMProcess is a running child serving the fake CRM.
type fakeCRMProcess struct {
	URL   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startFakeCRM starts this same program as the fake CRM child (tests: the
// test binary, whose TestMain does the same) and waits for its URL.
func startFakeCRM(ctx context.Context) (*fakeCRMProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), childEnv+"=fake-crm")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &fakeCRMProcess{cmd: cmd, stdin: stdin}
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		if s.Scan() {
			line <- s.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case u, ok := <-line:
		if !ok || !strings.HasPrefix(u, "http://127.0.0.1:") {
			p.Stop()
			return nil, errors.New("fake CRM child did not report its address")
		}
		p.URL = u
		return p, nil
	case <-ctx.Done():
		p.Stop()
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		p.Stop()
		return nil, errors.New("fake CRM child did not start within 10s")
	}
}

// Stop closes the child's stdin (it exits) and waits for it, killing it
// (this one process, by its handle) if it does not exit within 5 s.
func (p *fakeCRMProcess) Stop() {
	_ = p.stdin.Close()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}
