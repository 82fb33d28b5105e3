package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// child is a server this tool started in a process of its own: the service
// binary, the peer, the bare /config server or the fake CRM. Its stdout
// and stderr go straight to a file (the process writes its log there
// itself, as under an operator's `2>>service.log`), and the tool reads its
// CPU time and memory from /proc.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	stdin   io.WriteCloser // closed to tell our own child modes to exit
	exited  chan struct{}
	// Addr is what the child said it listens on.
	Addr string
	// peakRSS is VmHWM read just before the child was stopped.
	peakRSS int64
}

// startChild starts bin with exactly env (nothing inherited), its output
// to logPath, and waits until it writes the address it listens on: the
// service's JSON "listening" line with "addr", or "listening ADDR".
func startChild(ctx context.Context, name, bin string, args, env []string, logPath string) (*child, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If this tool dies without stopping it, the kernel kills the child.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, logPath: logPath, stdin: stdin, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.exited) }()
	deadline := time.After(20 * time.Second)
	for {
		if addr := listenAddr(logPath); addr != "" {
			c.Addr = addr
			return c, nil
		}
		select {
		case <-c.exited:
			return nil, fmt.Errorf("%s exited before listening: %s", name, lastLines(logPath, 5))
		case <-deadline:
			c.Stop()
			return nil, fmt.Errorf("%s did not listen within 20s: %s", name, lastLines(logPath, 5))
		case <-ctx.Done():
			c.Stop()
			return nil, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// listenAddr finds the address a child logged it listens on.
func listenAddr(logPath string) string {
	f, err := os.Open(logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Bytes()
		if rest, ok := bytes.CutPrefix(line, []byte("listening ")); ok {
			return strings.TrimSpace(string(rest))
		}
		var l struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(line, &l) == nil && l.Msg == "listening" && l.Addr != "" {
			return l.Addr
		}
	}
	return ""
}

func lastLines(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// Stop asks the child to stop (SIGTERM; stdin closed for our own child
// modes), as an orchestrator would, and waits; after 10 s it kills this one
// process, by its handle. Its peak RSS is read first.
func (c *child) Stop() {
	if c == nil {
		return
	}
	select {
	case <-c.exited:
		return
	default:
	}
	if _, peak, err := procMemory(c.cmd.Process.Pid); err == nil {
		c.peakRSS = peak
	}
	_ = c.stdin.Close()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// Pid is the child's process id.
func (c *child) Pid() int { return c.cmd.Process.Pid }

// procCPU is the user+system CPU time a process has used, from
// /proc/PID/stat (clock ticks of 10 ms: summed over a phase's rounds, a
// few tenths of a percent).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces: fields count from after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unreadable /proc stat times")
	}
	const tick = 10 * time.Millisecond // CLK_TCK is 100 on Linux
	return time.Duration(utime+stime) * tick, nil
}

// procThreadsCPU is the CPU time a process's live threads have used, in
// nanoseconds, from /proc/PID/task/*/schedstat: precise where procCPU
// counts 10 ms ticks (a short run's figure per call would be off by a
// tick's share). A thread that exited takes its time with it: read around
// a run of a Go server, whose threads stay, it is the run's CPU.
func procThreadsCPU(pid int) (time.Duration, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue // exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return 0, errors.New("unreadable schedstat")
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, err
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

// procReadsWrites is how many read and write system calls a process has
// made, from /proc/PID/io (syscr, syscw): on a socket, each is a message
// sent or a wake-up to read one (epoll, futex and MSG_PEEK not counted).
func procReadsWrites(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		return 0, err
	}
	var sum int64
	seen := 0
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if ok && (k == "syscr" || k == "syscw") {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, err
			}
			sum += n
			seen++
		}
	}
	if seen != 2 {
		return 0, errors.New("no syscr/syscw in /proc/" + strconv.Itoa(pid) + "/io")
	}
	return sum, nil
}

// procMemory reads a process's resident set size and its peak (VmRSS,
// VmHWM), in bytes.
func procMemory(pid int) (cur, peak int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(line, "VmRSS: %d kB", &kb); err == nil {
			cur = kb << 10
		}
		if _, err := fmt.Sscanf(line, "VmHWM: %d kB", &kb); err == nil {
			peak = kb << 10
		}
	}
	if cur == 0 {
		return 0, 0, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
	}
	return cur, peak, nil
}

// serviceBuildFlags are extra flags for the service's build: none in a
// real run (it is measured as deployed). The tests' small runs, whose
// figures are not judged, build it as the tests were built (-race), so
// the build only links what `go test -race` compiled already.
var serviceBuildFlags []string

// peerBuildFlags are the same for the peer's build.
var peerBuildFlags []string

// goBuild builds the main package in dir (a module of its own or this one)
// to out.
func goBuild(ctx context.Context, dir, out string, flags ...string) error {
	args := append(append([]string{"build"}, flags...), "-o", out, ".")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build in %s: %w: %s", dir, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// moduleRoot is the directory of this repository's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	p := strings.TrimSpace(string(gomod))
	if err != nil || p == "" || p == os.DevNull {
		return "", errors.New("run from inside the module (go env GOMOD is empty), or pass -service-binary and -peer-binary")
	}
	return filepath.Dir(p), nil
}

// baseEnv is what every child inherits from this process: only what the
// go toolchain and the runtime need, never this shell's service settings.
func baseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "GOMAXPROCS", "GOGC", "GOMEMLIMIT"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}
