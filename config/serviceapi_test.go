package config_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/redact"
)

func TestLoadReadsTheServiceAPIVariables(t *testing.T) {
	setEnv(t, map[string]string{
		"MODULE_CODE":         "m",
		"MODULE_SECRETS":      "s",
		"SERVICE_TOKEN":       "service-token-0001-current,service-token-0001-previous",
		"CRM_RATE_PER_SECOND": "25",
	})
	c, err := config.Load()
	require.NoError(t, err)
	assert.Equal(t, config.SecretList{"service-token-0001-current", "service-token-0001-previous"}, c.ServiceTokens)
	assert.Equal(t, 25, c.CRMRatePerSecond)
}

func TestLoadDefaultsTheCRMRateToTen(t *testing.T) {
	setEnv(t, map[string]string{"MODULE_CODE": "m", "MODULE_SECRETS": "s"})
	c, err := config.Load()
	require.NoError(t, err)
	assert.Equal(t, 10, c.CRMRatePerSecond)
	assert.Empty(t, c.ServiceTokens, "no tokens: the service API is off")
}

func TestServiceAPIVariablesAreValidated(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(c *config.Config)
		wantErr string
	}{
		{"two long tokens", func(c *config.Config) {
			c.ServiceTokens = []redact.Secret{"0123456789abcdef", "fedcba9876543210"}
		}, ""},
		{"a short service token", func(c *config.Config) {
			c.ServiceTokens = []redact.Secret{"0123456789abcdef", "hunter2"}
		}, "config: SERVICE_TOKEN: token #2 is shorter than 16 characters"},
		{"a token in both lists", func(c *config.Config) {
			c.AdminTokens = []redact.Secret{"admin-only-token-0001", "shared-token-00000001"}
			c.ServiceTokens = []redact.Secret{"shared-token-00000001"}
		}, "config: SERVICE_TOKEN: token #1 is also ADMIN_TOKEN #2"},
		{"a negative rate", func(c *config.Config) { c.CRMRatePerSecond = -1 }, "config: CRM_RATE_PER_SECOND:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.NotContains(t, err.Error(), "hunter2", "a token is never quoted")
			assert.NotContains(t, err.Error(), "shared-token", "a token is never quoted")
		})
	}
}

func TestLoadRefusesAnExplicitRateOfZero(t *testing.T) {
	setEnv(t, map[string]string{"MODULE_CODE": "m", "MODULE_SECRETS": "s", "CRM_RATE_PER_SECOND": "0"})
	_, err := config.Load()
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "config: CRM_RATE_PER_SECOND:"), err.Error())
}
