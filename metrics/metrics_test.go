package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/metrics"
)

func TestStatusClass(t *testing.T) {
	for status, want := range map[int]string{200: "2xx", 201: "2xx", 303: "3xx", 404: "4xx", 503: "5xx", 0: "error", 999: "error"} {
		assert.Equal(t, want, metrics.StatusClass(status), status)
	}
}

// A nil *Metrics is what handlers, the connect service and the store hook
// hold when nobody wants metrics (tests, tools): every call is a no-op.
func TestNilMetricsRecordNothingAndDoNotPanic(t *testing.T) {
	var m *metrics.Metrics
	assert.NotPanics(t, func() { m.HTTP("/config", "GET", 200, time.Millisecond) }, "HTTP")
	assert.NotPanics(t, func() { m.Register("ok") }, "Register")
	assert.NotPanics(t, func() { m.CRMAttempt("edit", 503, true, time.Millisecond) }, "CRMAttempt")
	assert.NotPanics(t, func() { m.Sweep(map[string]int{"completed": 1, "aborted": 2, "retrying": 3}) }, "Sweep")
	assert.NotPanics(t, func() { m.DomainRefresh("ok") }, "DomainRefresh")

	// Its Redis hook has nowhere to count a failure, and hands it on as is.
	// Called directly: a panic inside a real client would leave it locked.
	hook, ctx, down := m.RedisHook(), context.Background(), errors.New("connection refused")
	var err error
	assert.NotPanics(t, func() {
		err = hook.ProcessHook(func(context.Context, redis.Cmder) error { return down })(ctx, redis.NewStringCmd(ctx, "get", "k"))
	}, "ProcessHook")
	assert.ErrorIs(t, err, down)
	assert.NotPanics(t, func() {
		err = hook.ProcessPipelineHook(func(context.Context, []redis.Cmder) error { return down })(ctx, []redis.Cmder{redis.NewStringCmd(ctx, "get", "k")})
	}, "ProcessPipelineHook")
	assert.ErrorIs(t, err, down)
}

func TestRedisHookCountsFailuresButNotMisses(t *testing.T) {
	m := metrics.New()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	defer rdb.Close()
	rdb.AddHook(m.RedisHook())
	ctx := context.Background()

	require.ErrorIs(t, rdb.Get(ctx, "absent").Err(), redis.Nil) // a miss is no failure
	require.NoError(t, rdb.Set(ctx, "k", "v", 0).Err())
	require.Error(t, rdb.LPush(ctx, "k", "x").Err()) // WRONGTYPE
	mr.Close()
	require.Error(t, rdb.Get(ctx, "k").Err()) // the store is gone

	out := scrape(t, m)
	assert.Contains(t, out, `simpleconnect_store_errors_total{command="lpush"} 1`)
	assert.Contains(t, out, `simpleconnect_store_errors_total{command="get"} 1`)
	assert.False(t, strings.Contains(out, `command="set"`))
}

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, err := io.ReadAll(rec.Result().Body)
	require.NoError(t, err)
	return string(b)
}

func TestCRMAttemptsCountRetriesSeparately(t *testing.T) {
	m := metrics.New()
	m.CRMAttempt("edit", 503, false, 10*time.Millisecond)
	m.CRMAttempt("edit", 200, true, 10*time.Millisecond)
	m.Register("crm_unavailable")
	out := scrape(t, m)
	assert.Contains(t, out, `simpleconnect_crm_requests_total{op="edit",status="5xx"} 1`)
	assert.Contains(t, out, `simpleconnect_crm_requests_total{op="edit",status="2xx"} 1`)
	assert.Contains(t, out, `simpleconnect_crm_retries_total{op="edit"} 1`)
	assert.Contains(t, out, `simpleconnect_registers_total{outcome="crm_unavailable"} 1`)
	assert.Contains(t, out, "go_goroutines", "runtime collectors are registered")
}

func TestMethodLabelIsBounded(t *testing.T) {
	for _, m := range metrics.Methods {
		assert.Equal(t, m, metrics.MethodLabel(m))
	}
	for _, m := range []string{"get", "Post", "PROPFIND", "BREW", "", "GET ", strings.Repeat("X", 1000)} {
		assert.Equal(t, "other", metrics.MethodLabel(m), "%q", m)
	}
	m := metrics.New()
	for i := range 1000 {
		m.HTTP("/healthz", fmt.Sprintf("INVENTED%d", i), 200, time.Millisecond)
	}
	m.HTTP("/healthz", "GET", 200, time.Millisecond)
	out := scrape(t, m)
	assert.Contains(t, out, `simpleconnect_http_requests_total{method="other",route="/healthz",status="2xx"} 1000`)
	assert.Contains(t, out, `simpleconnect_http_requests_total{method="GET",route="/healthz",status="2xx"} 1`)
	assert.NotContains(t, out, "INVENTED")
}

// BenchmarkCRMAttempt is what every exchange with a CRM costs the metrics
// (two per register).
func BenchmarkCRMAttempt(b *testing.B) {
	m := metrics.New()
	b.ReportAllocs()
	for b.Loop() {
		m.CRMAttempt("edit", 200, false, time.Millisecond)
	}
}

// Each update replaces the whole set: a key id whose count fell to none
// (the old key after a reseal) leaves the exposition, it is not left at
// its last value.
func TestSealedAccountsReplacesTheCountsPerKeyID(t *testing.T) {
	m := metrics.New()
	m.SealedAccounts(map[string]int64{"0a0b0c0d": 3, "11223344": 1})
	out := scrape(t, m)
	assert.Contains(t, out, `simpleconnect_sealed_accounts{key_id="0a0b0c0d"} 3`)
	assert.Contains(t, out, `simpleconnect_sealed_accounts{key_id="11223344"} 1`)

	m.SealedAccounts(map[string]int64{"11223344": 4})
	out = scrape(t, m)
	assert.NotContains(t, out, `key_id="0a0b0c0d"`, "the old key seals nothing any more")
	assert.Contains(t, out, `simpleconnect_sealed_accounts{key_id="11223344"} 4`)
}
