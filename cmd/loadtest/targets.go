package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/modulehub/simpleconnect/seal"
)

// target is one server driven by the load generator.
type target struct {
	key  string // bare, peer, service
	name string
	url  string
	proc *child   // nil: in this process (-inprocess)
	svc  *service // the in-process service, with request tracing
	// code is the module code its edits carry; secret signs its registers;
	// prefix starts its Redis keys.
	code, secret, prefix string
	client               *http.Client
	nextShop             int // shops it has registered so far, as new shops
	// urls, when set, are replicas of one service: worker w talks to
	// urls[w%len(urls)]; procs are their processes.
	urls  []string
	procs []*child
	// env and bin start another replica of the service.
	env []string
	bin string
}

// cpu is the CPU time the target's server has used so far: its own
// process's, or this whole process's when it runs in process.
func (t *target) cpu() time.Duration {
	if len(t.procs) > 0 {
		var sum time.Duration
		for _, p := range t.procs {
			d, _ := procCPU(p.Pid())
			sum += d
		}
		return sum
	}
	if t.proc == nil {
		return processCPU()
	}
	d, _ := procCPU(t.proc.Pid())
	return d
}

// urlFor is the address worker w sends to.
func (t *target) urlFor(w int) string {
	if len(t.urls) > 0 {
		return t.urls[w%len(t.urls)]
	}
	return t.url
}

func (t *target) stop() {
	if t.proc != nil {
		t.proc.Stop()
	}
	if t.svc != nil {
		t.svc.Close()
	}
}

// peakRSS is the target process's VmHWM (read when it was stopped).
func (t *target) peakRSS() int64 {
	if t.proc == nil {
		return 0
	}
	return t.proc.peakRSS
}

// serviceEnv is the service's whole environment, as an operator would set
// it: real Redis under this run's prefix, the log as JSON lines at info
// level, insecure mode for the fake CRM on 127.0.0.1 (whose default allow
// list then includes this machine). Every limit stays at its default: they
// count failures and repeated attempts of one key, never valid traffic, and
// a refusal would show as a failed register with its reason. Nothing else
// is set, so a variable the service retires (RATE_LIMIT_PER_MINUTE, which
// now stops the start) is never passed.
func serviceEnv(redisURL, prefix, secret string, key []byte) []string {
	return append(baseEnv(),
		"MODULE_CODE=loadtest", "MODULE_SECRETS="+secret, "LISTEN_ADDR=127.0.0.1:0",
		"PUBLIC_URL=http://module.loadtest.localhost",
		"REDIS_URL="+redisURL, "REDIS_KEY_PREFIX="+prefix, "ENCRYPTION_KEY="+base64.StdEncoding.EncodeToString(key),
		"CRM_ALLOW_INSECURE=true", "LOG_FORMAT=json", "LOG_LEVEL=info",
	)
}

// startTargets starts the service (its binary, or in this process), the
// peer and the bare /config server.
func startTargets(ctx context.Context, o options, bins binaries, logDir, redisURL string, r *report) (svc, peer, bare *target, err error) {
	secret := "loadtest-secret-" + randomHex(8)
	svc = &target{key: "service", name: "simpleconnect", code: "loadtest", secret: secret, prefix: "loadtest-" + randomHex(8)}
	env := serviceEnv(redisURL, svc.prefix, secret, seal.NewRandomKey())
	svc.env, svc.bin = env, bins.service
	if o.inProcess {
		s, err := startService(ctx, env, filepath.Join(logDir, "service.log"))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("start the service in process: %w", err)
		}
		svc.svc, svc.url = s, s.URL
	} else {
		p, err := startChild(ctx, "service", bins.service, nil, env, filepath.Join(logDir, "service.log"))
		if err != nil {
			return nil, nil, nil, err
		}
		svc.proc, svc.url = p, "http://"+p.Addr
	}

	peer = &target{key: "peer", name: "minimal peer", code: "peer", secret: secret, prefix: "loadtest-peer-" + randomHex(8)}
	p, err := startChild(ctx, "peer", bins.peer, nil, append(baseEnv(),
		"LISTEN_ADDR=127.0.0.1:0", "PUBLIC_URL=http://peer.loadtest.localhost", "MODULE_CODE=peer", "MODULE_SECRET="+secret,
		"REDIS_URL="+redisURL, "REDIS_KEY_PREFIX="+peer.prefix, "GIN_MODE=release",
	), filepath.Join(logDir, "peer.log"))
	if err != nil {
		svc.stop()
		return nil, nil, nil, err
	}
	peer.proc, peer.url = p, "http://"+p.Addr

	// The bare server answers the service's own /config bytes.
	body, contentType, err := fetch(ctx, svc.url+"/config")
	if err != nil {
		svc.stop()
		peer.stop()
		return nil, nil, nil, fmt.Errorf("service /config: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, nil, nil, err
	}
	b, err := startChild(ctx, "bare", self, nil, append(baseEnv(), childEnv+"=bare",
		"LOADTEST_BODY="+string(body), "LOADTEST_CONTENT_TYPE="+contentType), filepath.Join(logDir, "bare.log"))
	if err != nil {
		svc.stop()
		peer.stop()
		return nil, nil, nil, err
	}
	bare = &target{key: "bare", name: "bare net/http", url: "http://" + b.Addr, proc: b}
	r.progressf("service at %s (pid %d), peer at %s (pid %d), bare /config at %s (pid %d); logs in %s",
		svc.url, pidOf(svc), peer.url, pidOf(peer), bare.url, pidOf(bare), logDir)
	return svc, peer, bare, nil
}

func pidOf(t *target) int {
	if t.proc == nil {
		return os.Getpid()
	}
	return t.proc.Pid()
}

func fetch(ctx context.Context, url string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", err
	}
	c := newClient(1)
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return b, resp.Header.Get("Content-Type"), err
}

// startYardstick starts a second peer that makes the service's round trips
// (PEER_SAME_ROUND_TRIPS=1: an attempt count and a credentials check, a
// Redis write before the edit and one after): how much of the service's cost is the round trips
// themselves, and how much is its own.
func startYardstick(ctx context.Context, bin, logDir, redisURL, secret string) (*target, error) {
	t := &target{key: "peer-rt", name: "peer, service's round trips", code: "peer", secret: secret, prefix: "loadtest-peer-rt-" + randomHex(8)}
	p, err := startChild(ctx, "peer with the service's round trips", bin, nil, append(baseEnv(),
		"LISTEN_ADDR=127.0.0.1:0", "PUBLIC_URL=http://peer.loadtest.localhost", "MODULE_CODE=peer", "MODULE_SECRET="+secret,
		"REDIS_URL="+redisURL, "REDIS_KEY_PREFIX="+t.prefix, "GIN_MODE=release", "PEER_SAME_ROUND_TRIPS=1",
	), filepath.Join(logDir, "peer-rt.log"))
	if err != nil {
		return nil, err
	}
	t.proc, t.url, t.client = p, "http://"+p.Addr, newClient(16)
	return t, nil
}

// startReplicas starts another process of the service's binary with the
// service's very environment (store, prefix, keys, secret) and returns a
// target that sends half of the workers to each: two replicas of one
// service, as behind a load balancer.
func startReplicas(ctx context.Context, svc *target, logDir string) (*target, *child, error) {
	p, err := startChild(ctx, "service replica", svc.bin, nil, svc.env, filepath.Join(logDir, "service-replica.log"))
	if err != nil {
		return nil, nil, err
	}
	pair := &target{
		key: "replicas", name: "simpleconnect, 2 replicas", code: svc.code, secret: svc.secret, prefix: svc.prefix,
		client: svc.client, urls: []string{svc.url, "http://" + p.Addr}, nextShop: svc.nextShop + 1, // a shop of its own
	}
	if svc.proc != nil {
		pair.procs = []*child{svc.proc, p}
	}
	return pair, p, nil
}

// serveBare is the bare /config child: a net/http handler that checks the
// route and writes the service's /config bytes with the same Content-Type,
// with the service's server settings, until stdin closes.
func serveBare(stdin io.Reader, out io.Writer, body []byte, contentType string, maxLife time.Duration) error {
	return serveChild(&http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/config" || r.Method != http.MethodGet {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(body)
		}),
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second, WriteTimeout: 25 * time.Second,
		IdleTimeout: 90 * time.Second, MaxHeaderBytes: 16 << 10, ErrorLog: log.New(io.Discard, "", 0),
	}, stdin, out, maxLife)
}

// serveChild is a child mode's life: srv on a new 127.0.0.1 port, written
// as "listening ADDR" to out (startChild waits for it), until stdin closes
// (the parent stopped it or died) or maxLife passes.
func serveChild(srv *http.Server, stdin io.Reader, out io.Writer, maxLife time.Duration) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	fmt.Fprintf(out, "listening %s\n", ln.Addr())
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, stdin); close(done) }()
	select {
	case <-done:
	case <-time.After(maxLife):
	}
	return nil
}
