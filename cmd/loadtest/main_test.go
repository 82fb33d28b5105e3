package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets the test binary be the fake CRM child too, as the real
// binary is.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "fake-crm" {
		if err := serveFakeCRM(os.Stdin, os.Stdout, time.Minute); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestPercentileIsNearestRank(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	assert.Equal(t, time.Duration(5), percentile(ds, 50))
	assert.Equal(t, time.Duration(10), percentile(ds, 99))
	assert.Equal(t, time.Duration(1), percentile(ds, 0.0001))
	assert.Zero(t, percentile(nil, 50))
}

// A small run of every phase but the binary start (the SIGTERM test in the
// root package already builds it) on the embedded store, or on REDIS_URL
// when set: it finishes by itself, reports each section and the targets,
// and leaves no key behind. No figure is asserted.
func TestSmallRunReportsEveryPhase(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a few thousand requests")
	}
	var out, progress bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err := realMain(ctx, []string{
		"-phases", "config,register,accounts", "-rounds", "2", "-config-requests", "300", "-registers", "50",
		"-accounts", "120", "-timeout", "50s",
	}, &out, &progress)
	require.NoError(t, err, progress.String())
	report := out.String()
	for _, want := range []string{
		"## GET /config", "throughput service/baseline", "## POST /register: 50 distinct shops", "0 failed",
		"our overhead = total − CRM's own time", "## Accounts", "after 120 accounts", "## Targets",
	} {
		assert.Contains(t, report, want)
	}
	assert.NotContains(t, report, "without a trace", "every measured register was traced")
}
