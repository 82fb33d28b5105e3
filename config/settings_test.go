package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/config"
)

func TestLoadReadsTheSettingsFile(t *testing.T) {
	setEnv(t, map[string]string{"MODULE_SETTINGS_FILE": filepath.Join("..", "settings.example.json")})
	c, err := config.Load()
	require.NoError(t, err)
	assert.Equal(t, filepath.Join("..", "settings.example.json"), c.ModuleSettingsFile)
}

func TestValidateChecksTheSettingsFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "settings.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"fields":[{"name":"token","type":"secret","label":"Token","default":"s3cr3t-default"}]}`), 0o600))

	for name, tc := range map[string]struct{ path, want string }{
		"missing file": {filepath.Join(dir, "nope.json"), "cannot read"},
		"bad schema":   {bad, "field #1 (token): a secret cannot have a default"},
	} {
		t.Run(name, func(t *testing.T) {
			c := validConfig()
			c.ModuleSettingsFile = tc.path
			err := c.Validate()
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "config: MODULE_SETTINGS_FILE: "), err.Error())
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "\n", "one line")
			assert.NotContains(t, err.Error(), "s3cr3t-default", "never a value from the file")
		})
	}

	c := validConfig()
	c.ModuleSettingsFile = ""
	assert.NoError(t, c.Validate(), "no file: no settings form, not an error")
}
