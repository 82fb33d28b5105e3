// Command simpleconnect is the service a RetailCRM / Simla.com marketplace
// module runs so that a shop connects it in one click: it answers the CRM's
// configUrl and registerUrl, registers the module in the shop's CRM, keeps
// the account in Redis and shows the module's account page.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/modulehub/simpleconnect/app"
	"github.com/modulehub/simpleconnect/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cfg, err := config.Load()
	if err == nil {
		err = run(ctx, cfg, os.Stderr, func(string) {})
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err) // one line per bad variable, or the step that failed
		os.Exit(1)
	}
}

// run serves until ctx ends, then drains in-flight requests (bounded by
// SHUTDOWN_TIMEOUT) and closes the store. ready receives the address
// listened on, so tests can use 127.0.0.1:0.
func run(ctx context.Context, cfg config.Config, stderr io.Writer, ready func(addr string)) error {
	log := app.NewLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	redis.SetLogger(redisLog{log}) // go-redis logs through a package-level logger; main owns process-wide state
	if cfg.CRMAllowInsecure {
		log.Warn("CRM_ALLOW_INSECURE is on: http and any port are accepted for the hosts of CRM_ALLOWED_HOSTS and the outbound address guard is off; never use this in production")
	}
	service, err := app.New(ctx, cfg, log, app.Options{})
	if err != nil {
		return err
	}
	defer service.Close()

	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.ListenAddr, err) // a busy port fails here, not in a goroutine
	}
	log.Info("listening", "addr", ln.Addr().String(), "public_url", cfg.PublicURL, "module", cfg.ModuleCode)
	ready(ln.Addr().String())
	if err := service.Serve(ctx, ln); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// redisLog sends go-redis's own messages (pool dial failures) to our log.
type redisLog struct{ log *slog.Logger }

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	r.log.WarnContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}
