// Command worker is an example of a module's own worker: it consumes the
// account event stream of a simpleconnect service with a consumer group
// and, for each shop that connects, talks to the shop's CRM with
// RetailCRM's own Go client through the service's CRM proxy. The worker
// never sees a shop's API key: the proxy adds it, and keeps the CRM's rate
// limit for every worker at once.
//
//	SERVICE_URL=http://127.0.0.1:8080 SERVICE_TOKEN=… REDIS_URL=redis://127.0.0.1:6379/0 go run .
//
// It lives in a module of its own (go.mod with a replace of the service),
// so the service's dependencies do not grow with RetailCRM's client.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"
	retailcrm "github.com/retailcrm/api-client-go/v2"

	"github.com/modulehub/simpleconnect/serviceclient"
)

// options are the worker's environment and flags.
type options struct {
	ServiceURL   string // SERVICE_URL: the simpleconnect service
	ServiceToken string // SERVICE_TOKEN: one of the service's SERVICE_TOKENs
	RedisURL     string // REDIS_URL: the service's Redis (the event stream)
	KeyPrefix    string // REDIS_KEY_PREFIX: the service's, default simpleconnect
	Group        string // WORKER_GROUP: consumer group, default example-worker
	Name         string // WORKER_NAME: this process in the group, default the host name
	Once         bool   // -once: stop after the first connected shop (CI)
	CreateOrder  bool   // -create-order: create a test order in each new shop
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	host, _ := os.Hostname()
	cfg := options{
		ServiceURL: os.Getenv("SERVICE_URL"), ServiceToken: os.Getenv("SERVICE_TOKEN"), RedisURL: os.Getenv("REDIS_URL"),
		KeyPrefix: envOr("REDIS_KEY_PREFIX", "simpleconnect"), Group: envOr("WORKER_GROUP", "example-worker"),
		Name: envOr("WORKER_NAME", host),
	}
	flag.BoolVar(&cfg.Once, "once", false, "stop after handling the first connected shop")
	flag.BoolVar(&cfg.CreateOrder, "create-order", false, "create a test order in every shop that connects")
	flag.Parse()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

var errDone = errors.New("done")

func run(ctx context.Context, cfg options, out io.Writer) error {
	sc, err := serviceclient.New(cfg.ServiceURL, cfg.ServiceToken)
	if err != nil {
		return err
	}
	// RetailCRM's client (v2.1.17, the peer's version too) takes no
	// *http.Client: its own has a nil Transport, so it sends through
	// http.DefaultTransport, and that is where the service token goes in,
	// for the service's own address only. A version with WithHTTPClient
	// would take sc.HTTPClient() instead:
	//	retailcrm.New(base, "").WithHTTPClient(sc.HTTPClient())
	http.DefaultTransport = sc.Transport(http.DefaultTransport)

	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return errors.New("REDIS_URL is not a Redis URL")
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()

	consumer := serviceclient.NewConsumer(rdb, cfg.KeyPrefix, cfg.Group, cfg.Name)
	err = consumer.Run(ctx, func(ctx context.Context, ev serviceclient.Event) error {
		if ev.Type != serviceclient.EventConnected && ev.Type != serviceclient.EventReconnected {
			return nil
		}
		if err := welcome(sc, cfg, ev, out); err != nil {
			return err // left pending: handed again on the next run
		}
		if cfg.Once {
			return errDone
		}
		return nil
	})
	if errors.Is(err, errDone) {
		return nil
	}
	return err
}

// welcome looks at a newly connected shop through the proxy: its orders,
// and with -create-order a test order of its own.
func welcome(sc *serviceclient.Client, cfg options, ev serviceclient.Event, out io.Writer) error {
	crm := retailcrm.New(sc.ProxyBase(ev.AccountID), "") // the proxy adds the shop's key
	orders, status, err := crm.Orders(retailcrm.OrdersRequest{Limit: 20, Page: 1})
	if err != nil {
		return fmt.Errorf("shop %s: orders: HTTP %d: %w", ev.AccountID, status, err)
	}
	fmt.Fprintf(out, "shop %s (%s): %d orders\n", ev.AccountID, ev.SystemURL, len(orders.Orders))
	if !cfg.CreateOrder {
		return nil
	}
	created, status, err := crm.OrderCreate(retailcrm.Order{FirstName: "Test", LastName: "Order", Email: "test@example.com"})
	if err != nil {
		return fmt.Errorf("shop %s: create an order: HTTP %d: %w", ev.AccountID, status, err)
	}
	b, _ := json.Marshal(map[string]any{"id": created.ID, "status": status})
	fmt.Fprintf(out, "shop %s: created order %s\n", ev.AccountID, b)
	return nil
}
