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

// A pattern the page cannot word, without a message, stops the start: the
// line names the field and the fix (issue 14: field errors say what is
// expected; a warning in a log would leave the owner stuck).
func TestRunStopsOnAPatternWithoutAMessage(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "settings.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"fields":[{"name":"sku","type":"text","label":"SKU","pattern":"[A-Z]{2}-[0-9]{4}"}]}`), 0o600))
	cfg := devConfig()
	cfg.ModuleSettingsFile = bad
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	err := run(ctx, cfg, io.Discard, func(string) { t.Error("must not become ready"); cancel() })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "config: MODULE_SETTINGS_FILE: ")
	assert.Contains(t, err.Error(), `field #1 (sku): pattern needs a "message"`)
}
