package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ServiceAPI counts what the service API does for the module's services:
// credential reads and CRM proxy calls, by outcome and method, never by
// shop or account (the label sets stay as small as the outcome list). A
// nil *ServiceAPI records nothing.
type ServiceAPI struct {
	reads     *prometheus.CounterVec
	proxy     *prometheus.CounterVec
	proxyWait prometheus.Histogram
}

// NewServiceAPI registers the service API's collectors on reg (the
// service's own registry: Metrics.Registry).
func NewServiceAPI(reg prometheus.Registerer) *ServiceAPI {
	s := &ServiceAPI{
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simpleconnect_credentials_reads_total",
			Help: "Reads of a shop's API key through the service API, by outcome (ok, not_found, not_connected, …).",
		}, []string{"outcome"}),
		proxy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "simpleconnect_crm_proxy_requests_total",
			Help: "Calls through the CRM proxy by method and outcome: the CRM's status class (crm_2xx, crm_4xx, …) or why nothing was sent (bad_path, inactive, crm_rate_limited, …).",
		}, []string{"method", "outcome"}),
		proxyWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "simpleconnect_crm_proxy_wait_seconds",
			Help:    "Time a proxied call waited for its turn under the shop's CRM rate limit.",
			Buckets: []float64{0, .05, .1, .25, .5, 1, 2, 5, 10},
		}),
	}
	reg.MustRegister(s.reads, s.proxy, s.proxyWait)
	return s
}

// CredentialsRead records one read of credentials by its outcome code.
func (s *ServiceAPI) CredentialsRead(outcome string) {
	if s == nil {
		return
	}
	s.reads.WithLabelValues(outcome).Inc()
}

// ProxyCall records one proxied call by method (one of the HTTP methods,
// else "other") and outcome code.
func (s *ServiceAPI) ProxyCall(method, outcome string) {
	if s == nil {
		return
	}
	s.proxy.WithLabelValues(proxyMethod(method), outcome).Inc()
}

// ProxyWait records how long a call waited for its slot.
func (s *ServiceAPI) ProxyWait(d time.Duration) {
	if s == nil {
		return
	}
	s.proxyWait.Observe(d.Seconds())
}

// proxyMethod bounds the method label: a caller may send any token as a
// method, and every distinct one would be a series of its own.
func proxyMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}
