package serviceapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/handlers/serviceapi"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/store"
)

// readOnly is a store whose GetAlong reads the account without queueing
// the caller's commands (a cache, say, or an early return).
type readOnly struct{ acc store.Account }

func (s readOnly) Get(context.Context, string) (store.Account, error) { return s.acc, nil }
func (s readOnly) GetAlong(context.Context, string, func(redis.Pipeliner)) (store.Account, error) {
	return s.acc, nil
}
func (readOnly) NoteCredentialsRead(context.Context, store.Account, string) error { return nil }

// countingPacer hands out every turn at once and counts them.
type countingPacer struct{ reserved, along atomic.Int32 }

func (p *countingPacer) Reserve(context.Context, string) (time.Duration, error) {
	p.reserved.Add(1)
	return 0, nil
}

func (p *countingPacer) ReserveAlong(context.Context, redis.Pipeliner, string) func() (time.Duration, error) {
	p.along.Add(1)
	return func() (time.Duration, error) { return 0, nil }
}

func (*countingPacer) Slack() time.Duration { return 20 * time.Millisecond }

// The rate limit never depends on the store queueing the turn with the
// read: a store that did not is followed by a turn taken alone, before
// anything reaches the CRM.
func TestTheProxyTakesATurnEvenWhenTheStoreQueuedNone(t *testing.T) {
	fake := crmtest.New(t)
	acc := store.Account{
		ID: "01ARZ3NDEKTSV4RRFFQ69G5FAV", SystemURL: fake.URL, APIKey: redact.Secret("key-turns"),
		Connected: true, Active: true,
	}
	pacer := &countingPacer{}
	api := serviceapi.New(serviceapi.Deps{
		Accounts: readOnly{acc}, CRM: crm.New(crm.Options{AllowInsecure: true}), Pacer: pacer,
	})
	e := echo.New()
	api.Mount(e.Group("/service/api"))
	srv := httptest.NewServer(e)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/service/api/accounts/" + acc.ID + "/crm/api/v5/orders")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Zero(t, pacer.along.Load(), "the store queued nothing")
	assert.EqualValues(t, 1, pacer.reserved.Load(), "the call took its turn alone")
	assert.Len(t, fake.Calls(), 1)
}
