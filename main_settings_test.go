package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRunStopsOnABadSettingsFile(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "settings.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"fields":[{"name":"x","type":"colour","label":"X"}]}`), 0o600))
	cfg := devConfig()
	cfg.ModuleSettingsFile = bad
	err := run(context.Background(), cfg, io.Discard, func(string) { t.Error("must not become ready") })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "config: MODULE_SETTINGS_FILE: ")
	assert.Contains(t, err.Error(), "field #1 (x): type must be")
}
