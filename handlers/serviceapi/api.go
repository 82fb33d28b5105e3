package serviceapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/docs"
	"github.com/modulehub/simpleconnect/metrics"
	"github.com/modulehub/simpleconnect/ratelimit"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/store"
)

// Errors of the service API; handlers' error table words them.
var (
	// ErrPending, ErrInactive, ErrFrozen, ErrKeyRevoked, ErrScopesMissing:
	// the shop's first connection never completed, the module is switched
	// off or frozen in its CRM, or the key health check found its key
	// refused or short of a scope the module needs; nothing was sent.
	// (ErrPending answers with connect.ErrNotConnected's code,
	// not_connected, in words that name the state.)
	ErrPending       = errors.New("serviceapi: the account was never connected")
	ErrInactive      = errors.New("serviceapi: the module is switched off in this shop's CRM")
	ErrFrozen        = errors.New("serviceapi: the module is frozen in this shop's CRM")
	ErrKeyRevoked    = errors.New("serviceapi: the shop's CRM no longer accepts its key")
	ErrScopesMissing = errors.New("serviceapi: the shop's key lacks a scope the module needs")
	// ErrBadPath: the CRM path is not an API path in plain form.
	ErrBadPath = errors.New("serviceapi: the CRM path must start with api/ and hold no dot segment, encoded slash or dot, or address")
	// ErrQueueFull: the shop's rate limit leaves no slot within the bounded
	// wait; Retry-After says when to try again.
	ErrQueueFull = errors.New("serviceapi: the shop's CRM rate limit is reached")
	// ErrTooLarge: the body is over the proxy's cap.
	ErrTooLarge = errors.New("serviceapi: the request body is too large")
	// ErrBadBody: the body could not be read (a broken chunked encoding).
	ErrBadBody = errors.New("serviceapi: the request body could not be read")
	// ErrCRMUnreachable: no reply came from the shop's CRM (refused,
	// timed out, or an address the outbound guard refuses).
	ErrCRMUnreachable = errors.New("serviceapi: the shop's CRM did not answer")
)

// TokenIDKey is the echo context key under which the bearer check leaves
// the id of the service token that opened the request (a digest prefix).
const TokenIDKey = "bearer_token_id"

// Accounts is what the service API needs of the store.
type Accounts interface {
	Get(ctx context.Context, id string) (store.Account, error)
	// GetAlong is Get with the queue's commands in the same Redis round
	// trip (the proxy's first turn).
	GetAlong(ctx context.Context, id string, queue func(redis.Pipeliner)) (store.Account, error)
	NoteCredentialsRead(ctx context.Context, acc store.Account, reader string) error
}

// CRM forwards a call to a shop's CRM (crm.Client).
type CRM interface {
	Forward(ctx context.Context, systemURL string, apiKey redact.Secret, r crm.ForwardRequest) (*http.Response, error)
}

// Pacer hands out each call's turn under a shop's rate limit
// (ratelimit.Pacer): how long until it, or *ratelimit.QueueFullError;
// Slack is how late a call may still go after its turn. ReserveAlong is
// Reserve queued on the pipeline that reads the account.
type Pacer interface {
	Reserve(ctx context.Context, key string) (time.Duration, error)
	ReserveAlong(ctx context.Context, pipe redis.Pipeliner, key string) func() (time.Duration, error)
	Slack() time.Duration
}

var (
	_ Accounts = (*store.Redis)(nil)
	_ CRM      = (*crm.Client)(nil)
	_ Pacer    = (*ratelimit.Pacer)(nil)
)

// Deps are the service API's dependencies.
type Deps struct {
	Accounts Accounts
	CRM      CRM
	// Pacer nil: no rate limit (tests of other things).
	Pacer   Pacer
	Metrics *metrics.ServiceAPI
	Log     *slog.Logger
	// Outcome names an error by its code in the error table (metrics).
	Outcome func(error) string
	// MaxBody caps a proxied request's body; 0: DefaultMaxBody.
	MaxBody int64
	// Tokens signs tokens for the module's apps; nil: the token route
	// answers 404.
	Tokens Issuer
}

// DefaultMaxBody caps a proxied body: orders and batch uploads are a few
// hundred kilobytes at most.
const DefaultMaxBody = 8 << 20

// API serves the routes below /service/api.
type API struct{ d Deps }

// New returns the service API.
func New(d Deps) *API {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Outcome == nil {
		d.Outcome = func(err error) string {
			if err == nil {
				return "ok"
			}
			return "error"
		}
	}
	if d.MaxBody <= 0 {
		d.MaxBody = DefaultMaxBody
	}
	return &API{d: d}
}

// ProxyRoute is the proxy's route template; its body cap is its own.
const ProxyRoute = "/service/api/accounts/:id/crm/*"

// Mount adds the routes to g, the /service/api group behind the bearer
// check.
func (a *API) Mount(g *echo.Group) {
	g.GET("/accounts/:id/credentials", a.handleCredentials)
	g.POST("/accounts/:id/token", a.handleToken)
	g.Any("/accounts/:id/crm/*", a.handleProxy)
	g.GET("/openapi.yaml", a.handleOpenAPI)
}

func (a *API) handleOpenAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/yaml", docs.OpenAPI)
}

// validID accepts what store ids look like (ULIDs), so nothing else
// reaches a Redis key name (as handlers' own check for the admin API).
func validID(id string) bool {
	if len(id) != 26 {
		return false
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

func tokenID(c echo.Context) string {
	id, _ := c.Get(TokenIDKey).(string)
	return id
}
