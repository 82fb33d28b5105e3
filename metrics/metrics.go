package metrics

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
)

// Metrics holds every collector. A nil *Metrics records nothing, so tests
// and tools may leave it out.
type Metrics struct {
	registry *prometheus.Registry

	httpRequests  *prometheus.CounterVec
	httpDuration  *prometheus.HistogramVec
	registers     *prometheus.CounterVec
	crmAttempts   *prometheus.CounterVec
	crmDuration   *prometheus.HistogramVec
	crmRetries    *prometheus.CounterVec
	storeErrors   *prometheus.CounterVec
	sweeps        *prometheus.CounterVec
	domainRefresh *prometheus.CounterVec
	sealed        *prometheus.GaugeVec
	keyChecks     *prometheus.CounterVec
	limited       *prometheus.CounterVec

	// httpSeries caches the two series of each route, method and status
	// class: label lookups hash their values on every call, and this runs
	// on every request (BENCHMARKS.md). Routes are templates and methods
	// one of Methods or "other", so the map stays as small as the route
	// table times ten.
	httpMu     sync.RWMutex
	httpSeries map[httpKey]httpPair
	// crmSeries caches the series of each CRM operation and status class
	// (crmKey → crmSeries).
	crmSeries sync.Map
}

type httpKey struct {
	route, method string
	class         int
}

type httpPair struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// New builds the collectors on a registry of their own, with the Go
// runtime and process collectors.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		registry:   r,
		httpSeries: map[httpKey]httpPair{},
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simpleconnect_http_requests_total", Help: "HTTP requests by route template, method and status class.",
		}, []string{"route", "method", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "simpleconnect_http_request_duration_seconds", Help: "HTTP request latency by route template.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method"}),
		registers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simpleconnect_registers_total", Help: "Register calls by outcome (ok, bad_token, bad_system_url, crm_denied, crm_unavailable, …).",
		}, []string{"outcome"}),
		crmAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simpleconnect_crm_requests_total", Help: "HTTP exchanges with shops' CRMs (retries included) by operation and status class.",
		}, []string{"op", "status"}),
		crmDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "simpleconnect_crm_request_duration_seconds", Help: "Latency of one exchange with a CRM.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"op"}),
		crmRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simpleconnect_crm_retries_total", Help: "CRM exchanges that were retries of an earlier attempt.",
		}, []string{"op"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simpleconnect_store_errors_total", Help: "Redis commands that failed (not counting misses), by command.",
		}, []string{"command"}),
		sweeps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simpleconnect_sweeper_accounts_total", Help: "Pending connections the sweeper handled, by result.",
		}, []string{"result"}),
		domainRefresh: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simpleconnect_domain_list_refreshes_total", Help: "Fetches of the CRM's domain lists by outcome.",
		}, []string{"outcome"}),
		keyChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simpleconnect_key_checks_total", Help: "Checks of shops' API keys at their CRMs, by outcome (healthy, key_revoked, scopes_missing, failed, skipped).",
		}, []string{"outcome"}),
		sealed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "simpleconnect_sealed_accounts", Help: "Accounts sealed (fully or in part) with each encryption key id; an old key may go once its count is 0.",
		}, []string{"key_id"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simpleconnect_limited_total",
			Help: "Requests a limit answered: failures past a client address's budget (failures), registers past a (shop, key) pair's bound (shop_key).",
		}, []string{"limit"}),
	}
	r.MustRegister(m.httpRequests, m.httpDuration, m.registers, m.crmAttempts, m.crmDuration, m.crmRetries,
		m.storeErrors, m.sweeps, m.domainRefresh, m.sealed, m.keyChecks, m.limited,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the text exposition.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// Registry exposes the registry (tests read values from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// StatusClass is "2xx", "4xx", …; "error" when no reply came.
func StatusClass(status int) string {
	if status < 100 || status > 599 {
		return "error"
	}
	return statusClasses[status/100-1] // no string built per call
}

var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// Methods are the request methods counted by name; any other method, which
// the caller is free to invent, counts as "other". Without this, each
// invented method was a new series: 20,000 requests to /healthz made
// /metrics a 2.9 GB body.
var Methods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace,
}

// MethodLabel is the method label of a request method: the method itself
// when it is one of Methods (exactly: "get" is not GET), else "other".
func MethodLabel(method string) string {
	for _, m := range Methods {
		if method == m {
			return m
		}
	}
	return "other"
}

// HTTP records one served request. route is the route template, never the
// request's path (the caller maps a request no route matched to one value);
// the method is bounded by MethodLabel, the status by its class.
func (m *Metrics) HTTP(route, method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	method = MethodLabel(method)
	key := httpKey{route, method, status / 100}
	m.httpMu.RLock()
	pair, ok := m.httpSeries[key]
	m.httpMu.RUnlock()
	if !ok {
		pair = httpPair{
			count:    m.httpRequests.WithLabelValues(route, method, StatusClass(status)),
			duration: m.httpDuration.WithLabelValues(route, method),
		}
		m.httpMu.Lock()
		m.httpSeries[key] = pair
		m.httpMu.Unlock()
	}
	pair.count.Inc()
	pair.duration.Observe(d.Seconds())
}

// Register records a register's outcome code.
func (m *Metrics) Register(outcome string) {
	if m == nil {
		return
	}
	m.registers.WithLabelValues(outcome).Inc()
}

// CRMAttempt records one exchange with a CRM; retry says it repeated an
// earlier attempt of the same call.
func (m *Metrics) CRMAttempt(op string, status int, retry bool, d time.Duration) {
	if m == nil {
		return
	}
	series := m.crmSeriesFor(op, status)
	series.count.Inc()
	series.duration.Observe(d.Seconds())
	if retry {
		series.retries.Inc()
	}
}

type crmKey struct {
	op    string
	class int
}

type crmSeries struct {
	count, retries prometheus.Counter
	duration       prometheus.Observer
}

// crmSeriesFor returns the series of an operation and status class, looked
// up once (ops are the client's few constants; classes are bounded), as
// the HTTP series are: two exchanges per register would otherwise hash
// their label values three times each.
func (m *Metrics) crmSeriesFor(op string, status int) crmSeries {
	key := crmKey{op, status / 100}
	if status < 100 || status > 599 {
		key.class = 0
	}
	if v, ok := m.crmSeries.Load(key); ok {
		return v.(crmSeries)
	}
	s := crmSeries{
		count:    m.crmAttempts.WithLabelValues(op, StatusClass(status)),
		duration: m.crmDuration.WithLabelValues(op),
		retries:  m.crmRetries.WithLabelValues(op),
	}
	m.crmSeries.Store(key, s)
	return s
}

// Sweep records what one sweep did: accounts by result (completed,
// synced, aborted, abandoned, retrying, skipped, unreadable).
func (m *Metrics) Sweep(results map[string]int) {
	if m == nil {
		return
	}
	for result, n := range results {
		m.sweeps.WithLabelValues(result).Add(float64(n))
	}
}

// KeyChecks records one round of key checks: counts by outcome.
func (m *Metrics) KeyChecks(outcomes map[string]int) {
	if m == nil {
		return
	}
	for outcome, n := range outcomes {
		m.keyChecks.WithLabelValues(outcome).Add(float64(n))
	}
}

// SealedAccounts sets how many accounts each encryption key id sealed
// (the store's own count; the key ids are the configured keys' and those
// found in the store, so the label set stays small).
func (m *Metrics) SealedAccounts(byKey map[string]int64) {
	if m == nil {
		return
	}
	m.sealed.Reset()
	for id, n := range byKey {
		m.sealed.WithLabelValues(id).Set(float64(n))
	}
}

// Limited records a request a limit answered: "failures" or "shop_key".
func (m *Metrics) Limited(limit string) {
	if m == nil {
		return
	}
	m.limited.WithLabelValues(limit).Inc()
}

// DomainRefresh records a domain list fetch.
func (m *Metrics) DomainRefresh(outcome string) {
	if m == nil {
		return
	}
	m.domainRefresh.WithLabelValues(outcome).Inc()
}

// RedisHook counts failed Redis commands. Misses (redis.Nil) and lost
// optimistic transactions (retried by the store) are not failures.
func (m *Metrics) RedisHook() redis.Hook { return redisHook{m} }

type redisHook struct{ m *Metrics }

func (redisHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.count(cmd.Name(), err)
		return err
	}
}

func (h redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err != nil && !benign(err) {
			h.count("pipeline", err)
		}
		return err
	}
}

func (h redisHook) count(command string, err error) {
	if err != nil && !benign(err) && h.m != nil {
		h.m.storeErrors.WithLabelValues(command).Inc()
	}
}

func benign(err error) bool {
	return errors.Is(err, redis.Nil) || errors.Is(err, redis.TxFailedErr)
}
