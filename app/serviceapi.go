package app

import (
	"log/slog"
	"time"

	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/handlers"
	"github.com/modulehub/simpleconnect/handlers/serviceapi"
	"github.com/modulehub/simpleconnect/metrics"
	"github.com/modulehub/simpleconnect/ratelimit"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/tokens"
)

// ProxyMaxWait bounds how long a proxied call waits for its turn under the
// shop's rate limit before it is answered 429: at ten a second, fifty
// calls queue. With CRM_TIMEOUT on top it stays within the server's
// WriteTimeout (CRM_TIMEOUT + 15s).
const ProxyMaxWait = 5 * time.Second

// ShopPacer spaces the calls to each shop's CRM at CRM_RATE_PER_SECOND
// across replicas (the store's Redis): the proxy's and the key checks'.
// Each call waits at most maxWait for its turn (0: ProxyMaxWait).
func ShopPacer(cfg config.Config, accounts *store.Redis, maxWait time.Duration) *ratelimit.Pacer {
	if maxWait <= 0 {
		maxWait = ProxyMaxWait
	}
	return ratelimit.NewPacer(accounts.Client(), cfg.RedisKeyPrefix, cfg.CRMRatePerSecond, maxWait)
}

// ServiceAPI builds the service API (/service/api) on the store, the CRM
// client (the same guarded transport as every CRM call) and the shops'
// pacer.
func ServiceAPI(cfg config.Config, log *slog.Logger, accounts *store.Redis, c *crm.Client, m *metrics.Metrics, issuer *tokens.Issuer, pacer *ratelimit.Pacer) *serviceapi.API {
	var reg *metrics.ServiceAPI
	if m != nil {
		reg = metrics.NewServiceAPI(m.Registry())
	}
	d := serviceapi.Deps{
		Accounts: accounts, CRM: c, Log: log, Metrics: reg, Outcome: handlers.Outcome,
		Pacer: pacer,
	}
	if issuer != nil { // a nil *tokens.Issuer must stay a nil interface
		d.Tokens = issuer
	}
	return serviceapi.New(d)
}
