// Command peer is the baseline simpleconnect is measured against: the
// minimal RetailCRM marketplace module a developer writes from what
// RetailCRM's own Go libraries suggest. gin serves /config and /register;
// /register verifies the CRM's token, registers the module in the shop's
// CRM with api-client-go's IntegrationModuleEdit and keeps the shop in one
// plaintext Redis HSET.
//
// It lives in its own Go module so that its dependencies (gin,
// api-client-go) never enter the service's go.mod. cmd/loadtest builds and
// runs it next to the service; see BENCHMARKS.md.
//
// It is deliberately naive, and wrong in ways simpleconnect must not copy:
// no check of the shop's address, no credentials check, the last write
// wins, the API key is stored in clear, every register issues a new
// clientId, and a CRM that answers the edit with "info":[] needs the
// workaround in edit.go. Do not deploy it.
//
//	LISTEN_ADDR=127.0.0.1:0 REDIS_URL=redis://127.0.0.1:6379/0 MODULE_SECRET=s go run .
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, stdout *os.File) error {
	cfg := configFrom(getenv)
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()

	gin.SetMode(gin.ReleaseMode)
	gin.DefaultWriter = stdout // gin.Default's request log: one line per request, as deployed
	srv := &http.Server{Handler: newRouter(cfg, rdb), ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "listening %s\n", ln.Addr())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// config is the peer's whole configuration, from the environment.
type config struct {
	ListenAddr string // LISTEN_ADDR, default :8080
	PublicURL  string // PUBLIC_URL, default http://localhost:8080
	ModuleCode string // MODULE_CODE, default peer
	Secret     string // MODULE_SECRET
	RedisURL   string // REDIS_URL, default redis://127.0.0.1:6379/0
	KeyPrefix  string // REDIS_KEY_PREFIX, default peer
	// SameRoundTrips (PEER_SAME_ROUND_TRIPS=1) makes the peer do the
	// service's round trips: a count of attempts per shop and key, a
	// credentials check, a write before the edit and one after (3 Redis
	// round trips, 2 CRM calls). Not what the peer is: a yardstick for how
	// much of the service's cost is its round trips (BENCHMARKS.md).
	SameRoundTrips bool
}

func configFrom(getenv func(string) string) config {
	or := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	return config{
		ListenAddr: or("LISTEN_ADDR", ":8080"), PublicURL: or("PUBLIC_URL", "http://localhost:8080"),
		ModuleCode: or("MODULE_CODE", "peer"), Secret: getenv("MODULE_SECRET"),
		RedisURL: or("REDIS_URL", "redis://127.0.0.1:6379/0"), KeyPrefix: or("REDIS_KEY_PREFIX", "peer"),
		SameRoundTrips: getenv("PEER_SAME_ROUND_TRIPS") == "1",
	}
}
