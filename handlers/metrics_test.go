package handlers_test

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/handlers"
	"github.com/modulehub/simpleconnect/metrics"
)

// seriesCount is the number of our series on the registry (the Go runtime
// and process collectors have a fixed set of their own).
func seriesCount(t *testing.T, m *metrics.Metrics) int {
	t.Helper()
	families, err := m.Registry().Gather()
	require.NoError(t, err)
	n := 0
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "simpleconnect_") {
			n += len(f.GetMetric())
		}
	}
	return n
}

// /metrics is public: whatever methods and paths a caller invents, the
// number of series stays what the route table makes it. Before, each new
// method was a new series (20,000 requests made a 2.9 GB exposition).
func TestInventedMethodsAndPathsDoNotGrowTheMetrics(t *testing.T) {
	h := newHarness(t, nil)
	m := metrics.New()
	e := handlers.New(handlers.Deps{
		Config: h.cfg, Log: slog.New(slog.DiscardHandler), Connector: stubConnector{},
		Accounts: h.store, Sessions: h.store, Store: h.store, Metrics: m,
	})
	rng := rand.New(rand.NewPCG(1, 2))
	prefixes := []string{"/", "/config/", "/register/", "/account/", "/static/", "/admin/api/", "/admin/", "/healthz/", "/x"}
	known := []string{"/config", "/register", "/activity", "/account", "/healthz", "/readyz", "/metrics", "/static/style.css", "/admin/api/accounts"}
	send := func(n int) {
		for i := range n {
			method := fmt.Sprintf("M%08X", rng.Uint32()) // a valid token, never a real method
			if i%3 == 0 {
				method = metrics.Methods[rng.IntN(len(metrics.Methods))]
			}
			path := prefixes[rng.IntN(len(prefixes))] + fmt.Sprintf("p%08x", rng.Uint32())
			if i%4 == 0 {
				path = known[rng.IntN(len(known))] // invented methods on real routes: 405s
			}
			req := httptest.NewRequest(method, path, nil)
			e.ServeHTTP(httptest.NewRecorder(), req)
		}
	}

	// Every route a request can land on, with every method label: the
	// series that can exist at all.
	for _, p := range append(known, prefixes...) {
		for _, method := range append([]string{"INVENTED"}, metrics.Methods...) {
			e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, p+"p", nil))
			e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, p, nil))
		}
	}
	before := seriesCount(t, m)
	require.Positive(t, before)
	send(10_000)
	after := seriesCount(t, m)
	assert.Equal(t, before, after, "10,000 invented methods and paths added no series")

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	assert.Contains(t, body, `method="other"`)
	assert.Contains(t, body, `route="unmatched"`)
	assert.NotContains(t, body, `method="M`, "no invented method is a label value")
	assert.NotContains(t, body, `route="/x`, "no invented path is a label value")
	assert.Less(t, len(body), 200_000, "the exposition stays small")
}
