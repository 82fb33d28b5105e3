package main

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// assertProxyReport checks the proxy phase's part of a small run
// (TestSmallRunReportsEveryPhase, so the binaries are built once): the fake
// CRM driven directly, through the two bare proxies and through the
// service's proxy (its binary), every call answered 200, each proxy
// process's CPU read, and the two targets. No figure is asserted.
func assertProxyReport(t *testing.T, report string) {
	t.Helper()
	assert.Contains(t, report, "## CRM proxy")
	// Every request of every path got the CRM's 200: the figures are of
	// calls that worked (a 404 from a fake that lacked the method was once
	// measured instead).
	assert.Regexp(t, `\| fake CRM directly \| \d+ \| 0 \|`, report, "no direct call failed")
	for _, path := range []string{"bare net/http reverse proxy", "bare proxy + one Redis round trip", "the service's proxy"} {
		assert.Regexp(t, `\| `+regexp.QuoteMeta(path)+` \| [1-9]\d* \| 0 \| \d+ \| [0-9.]+ ms \| [0-9.]+ ms \| [0-9.]+ µs \| [1-9][0-9.]* \|`, report,
			"every call through %s got the CRM's 200, and its process's CPU and system calls were read", path)
	}
	assert.Contains(t, report, "service's proxy vs the yardstick")
	assert.Contains(t, report, "| CRM proxy: added p99 on loopback |")
	assert.Contains(t, report, "| CRM proxy: throughput vs direct (rate limit raised) |")
}

// With -proxy-crm-time the fake CRM takes that long over GET
// /api/v5/orders: the proxy phase's figures with a CRM that takes its
// time.
func TestFakeCRMTakesItsTimeOverOrders(t *testing.T) {
	const crmTime = 30 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	fake, err := startFakeCRM(ctx, false, t.TempDir(), crmTime)
	require.NoError(t, err)
	defer fake.proc.Stop()
	require.NoError(t, fake.ensure(ctx, 1))
	client := newClient(1)
	defer client.CloseIdleConnections()
	d, err := crmGetter(client, "http://"+fake.shop(0)+"/api/v5/orders", "X-API-KEY", "key")(ctx, 0, 0)
	require.NoError(t, err, "a page of orders, 200")
	assert.GreaterOrEqual(t, d, crmTime)
}
