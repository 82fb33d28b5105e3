package handlers

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/connect"
	"github.com/modulehub/simpleconnect/handlers/serviceapi"
	"github.com/modulehub/simpleconnect/i18n"
	"github.com/modulehub/simpleconnect/metrics"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/settings"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/tokens"
	"github.com/modulehub/simpleconnect/verify"
)

// Connector connects and manages shops (package connect).
type Connector interface {
	Connect(ctx context.Context, systemURL string, apiKey redact.Secret) (store.Account, error)
	Deactivate(ctx context.Context, id string, localOnly bool) (store.Account, error)
	Resync(ctx context.Context, id string) (store.Account, error)
	Activity(ctx context.Context, acc store.Account, st store.State, newURL string, follow bool) (store.Account, error)
}

var _ Connector = (*connect.Service)(nil)

// Accounts is what the handlers need of the account store.
type Accounts interface {
	Get(ctx context.Context, id string) (store.Account, error)
	FindByClientID(ctx context.Context, clientID redact.Secret) (store.Account, error)
	FindBySystemURL(ctx context.Context, systemURL string) (store.Account, error)
	List(ctx context.Context, q store.ListQuery) (store.Page, error)
	Events(ctx context.Context, after string, count int64) ([]store.Event, error)
	SaveSettings(ctx context.Context, read store.Account, settings map[string]string) (store.Account, error)
}

// Sealing is what the admin API needs to re-seal stored credentials.
type Sealing interface {
	Reseal(ctx context.Context) (store.ResealReport, error)
}

// Sessions is what the account page needs to remember a signed-in browser.
type Sessions interface {
	CreateSession(ctx context.Context, accountID string, ttl time.Duration) (store.Session, error)
	GetSession(ctx context.Context, id redact.Secret) (store.Session, error)
	DeleteSession(ctx context.Context, id redact.Secret) error
	// A form sent but not saved, kept for the session (account_settings.go).
	SaveDraft(ctx context.Context, id redact.Secret, d store.Draft, ttl time.Duration) error
	GetDraft(ctx context.Context, id redact.Secret) (store.Draft, error)
	DeleteDraft(ctx context.Context, id redact.Secret) error
}

// Pinger answers whether the store is reachable (readiness).
type Pinger interface {
	Ping(ctx context.Context) error
}

var (
	_ Accounts = (*store.Redis)(nil)
	_ Sessions = (*store.Redis)(nil)
	_ Pinger   = (*store.Redis)(nil)
	_ Sealing  = (*store.Redis)(nil)
)

// Deps are the server's dependencies.
type Deps struct {
	Config    config.Config
	Log       *slog.Logger
	Connector Connector
	Accounts  Accounts
	Sessions  Sessions
	Store     Pinger
	// Sealing re-seals stored credentials (admin API); nil: the route
	// answers 404.
	Sealing Sealing
	// Tokens signs the shop's identity for the module's apps; nil: the
	// token routes answer 404.
	Tokens *tokens.Issuer
	// Addresses validates shop addresses; built from Config when nil.
	Addresses *verify.AddressPolicy
	// Failures counts failed requests per client address; nil: no budget.
	Failures FailureBudget
	// Attempts bounds CRM attempts per (shop, API key); nil: no bound.
	Attempts AttemptBudget
	// IPExtractor finds the client address; nil: the connection's peer.
	IPExtractor echo.IPExtractor
	// Metrics records requests and registers and serves /metrics; nil: none.
	Metrics *metrics.Metrics
	// Settings are the module's connection variables (MODULE_SETTINGS_FILE);
	// the zero Schema: the account page has no settings form.
	Settings settings.Schema
	// ServiceAPI serves /service/api behind SERVICE_TOKEN; nil (or no
	// token configured): every path there answers 404.
	ServiceAPI *serviceapi.API
}

// server carries what handlers share.
type server struct {
	cfg       config.Config
	log       *slog.Logger
	connector Connector
	accounts  Accounts
	sessions  Sessions
	store     Pinger
	sealing   Sealing
	tokens    *tokens.Issuer
	addresses verify.AddressPolicy
	failures  FailureBudget
	attempts  AttemptBudget
	metrics   *metrics.Metrics
	pages     *pages
	words     *i18n.Catalogs
	settings  settings.Schema
	service   *serviceapi.API

	// configBody is /config's reply, encoded once: it depends only on the config.
	configBody []byte
	// openCSP is the CSP of an account page that offers "Open <module>"
	// (pageCSP); nil without MODULE_APP_URL.
	openCSP []string
}

// New builds the HTTP server from the config and its dependencies.
func New(d Deps) *echo.Echo {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	s := &server{
		cfg: d.Config, log: d.Log, connector: d.Connector, accounts: d.Accounts, sessions: d.Sessions, store: d.Store, sealing: d.Sealing, tokens: d.Tokens,
		failures: d.Failures, attempts: d.Attempts, metrics: d.Metrics, pages: mustParsePages(),
		words: i18n.MustLoad(), settings: d.Settings, service: d.ServiceAPI,
	}
	if d.Addresses != nil {
		s.addresses = *d.Addresses
	} else {
		s.addresses = AddressPolicy(d.Config)
	}
	s.configBody = configReply(d.Config)
	if origin := d.Config.ModuleAppOrigin(); origin != "" {
		s.openCSP = []string{pageCSP(origin)}
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.IPExtractor = d.IPExtractor
	if e.IPExtractor == nil {
		e.IPExtractor = echo.ExtractIPDirect() // headers are the caller's to forge; trust them only behind known proxies
	}
	e.HTTPErrorHandler = s.handleError
	e.Renderer = s.pages
	s.routes(e)
	return e
}

// AddressPolicy is the shop address policy the config describes.
func AddressPolicy(cfg config.Config) verify.AddressPolicy {
	return verify.AddressPolicy{
		AllowedHosts: cfg.CRMAllowedHosts, AllowedPorts: cfg.AllowedPortStrings(), AllowInsecure: cfg.CRMAllowInsecure,
		MoveHosts: config.DefaultCRMHosts,
	}
}

// IPExtractor finds the client's address: the connection's peer, or the
// X-Forwarded-For entry added by one of the trusted proxies.
func IPExtractor(trustedProxies []string) echo.IPExtractor {
	if len(trustedProxies) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, cidr := range trustedProxies { // config.Validate parsed each: none is skipped here
		if _, n, err := net.ParseCIDR(cidr); err == nil {
			opts = append(opts, echo.TrustIPRange(n))
		}
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}
