// Package metrics is the service's Prometheus instrumentation: HTTP
// requests by route template and status class, registers by outcome, CRM
// calls, retries and latency, store errors, sweeps and domain list
// refreshes. It owns its registry (no global state), and no label ever
// holds a credential or a shop address: only route templates, operation
// names, status classes and outcome codes.
package metrics
