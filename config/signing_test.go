package config_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/config"
)

func TestTokenSigningKeysAndTheAppURL(t *testing.T) {
	seed := strings.Repeat("k", 32)
	good := base64.StdEncoding.EncodeToString([]byte(seed))
	for _, tt := range []struct {
		name, keys, app, wantErr string
		origin                   string // MODULE_APP_URL's, for the page's CSP
		n                        int
	}{
		{name: "none", n: 0},
		{name: "two for rotation, spaces trimmed", keys: good + " , " + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("j", 32))), n: 2},
		{name: "not base64", keys: "not*base64", wantErr: "TOKEN_SIGNING_KEY"},
		{name: "not a seed", keys: base64.StdEncoding.EncodeToString([]byte("short")), wantErr: "TOKEN_SIGNING_KEY"},
		{name: "an empty item", keys: good + ",", wantErr: "TOKEN_SIGNING_KEY"},
		{name: "app URL", app: "https://app.example.com/x", origin: "https://app.example.com"},
		{name: "app URL with a fragment", app: "https://app.example.com/#x", wantErr: "MODULE_APP_URL"},
		{name: "app URL relative", app: "/app", wantErr: "MODULE_APP_URL"},
		{name: "app URL with a port", app: "HTTPS://App.Example.com:8443/x?y=1", origin: "https://app.example.com:8443"},
		{name: "app URL on an IPv4 address", app: "http://127.0.0.1:9000/", origin: "http://127.0.0.1:9000"},
		// The origin is written into the page's CSP: nothing there may
		// end the directive or name what CSP cannot.
		{name: "app URL host with a ';'", app: "https://app.example.com;script-src*/", wantErr: "MODULE_APP_URL"},
		{name: "app URL host with a ','", app: "https://a,b.example.com/", wantErr: "MODULE_APP_URL"},
		{name: "app URL on an IPv6 literal", app: "http://[::1]:9000/", wantErr: "MODULE_APP_URL"},
		{name: "app URL with an IDN not in punycode", app: "https://приложение.рф/", wantErr: "MODULE_APP_URL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, map[string]string{"TOKEN_SIGNING_KEY": tt.keys, "MODULE_APP_URL": tt.app})
			cfg, err := config.Load()
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.NotContains(t, err.Error(), "not*base64", "never the value")
				return
			}
			require.NoError(t, err)
			assert.Len(t, cfg.TokenSigningKeys, tt.n)
			assert.Equal(t, tt.origin, cfg.ModuleAppOrigin())
			assert.NotContains(t, cfg.TokenSigningKeys.String(), good)
		})
	}
}
