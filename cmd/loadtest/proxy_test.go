package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A small run of the proxy phase alone: it connects a shop, drives the
// fake CRM directly and through the proxy, and reports both and the two
// targets. No figure is asserted.
func TestSmallProxyRunReportsBothPaths(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a few hundred requests")
	}
	var out, progress bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err := realMain(ctx, []string{"-phases", "proxy", "-proxy-rounds", "2", "-proxy-requests", "200", "-timeout", "50s"}, &out, &progress)
	require.NoError(t, err, progress.String())
	report := out.String()
	assert.Contains(t, report, "## CRM proxy")
	assert.Contains(t, report, "| fake CRM directly | ")
	assert.Contains(t, report, "| through the proxy | ")
	assert.Contains(t, report, "CRM proxy: added p99 on loopback")
	assert.NotContains(t, report, "| 0 | 0 |", "both paths were driven")
	// Every request of both paths got the CRM's 200: the figures are of
	// calls that worked (a 404 from a fake that lacked the method was once
	// measured instead).
	assert.Regexp(t, `\| fake CRM directly \| \d+ \| 0 \|`, report, "no direct call failed")
	assert.Regexp(t, `\| through the proxy \| \d+ \| 0 \|`, report, "no proxied call failed")
}
