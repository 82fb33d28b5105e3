package config_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/redact"
)

// Two 32-byte keys, as `openssl rand -base64 32` prints them.
var (
	key1    = bytes.Repeat([]byte{0xA1}, 32)
	key2    = bytes.Repeat([]byte{0xB2}, 32)
	key1B64 = base64.StdEncoding.EncodeToString(key1)
	key2B64 = base64.StdEncoding.EncodeToString(key2)
)

// clearEnv unsets every variable Config reads, for the test only: CI runs
// with REDIS_URL set, and a developer's shell may hold any of them.
func clearEnv(t *testing.T) {
	t.Helper()
	typ := reflect.TypeOf(config.Config{})
	names := []string{"RATE_LIMIT_PER_MINUTE"} // retired: set, it stops the start
	for i := range typ.NumField() {
		if name := typ.Field(i).Tag.Get("envconfig"); name != "" {
			names = append(names, name)
		}
	}
	for _, name := range names {
		t.Setenv(name, "") // restores the old value after the test
		require.NoError(t, os.Unsetenv(name))
	}
}

// setEnv clears the environment, then sets the minimal valid one plus env.
// A value of "-" unsets a variable of the minimal set.
func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	clearEnv(t)
	base := map[string]string{"MODULE_CODE": "my-module", "MODULE_SECRETS": "partner-secret"}
	for k, v := range env {
		base[k] = v
	}
	for k, v := range base {
		if v == "-" {
			continue
		}
		t.Setenv(k, v)
	}
}

func TestLoadMinimalEnvUsesContractDefaults(t *testing.T) {
	setEnv(t, nil)

	c, err := config.Load()
	require.NoError(t, err)

	assert.Equal(t, ":8080", c.ListenAddr)
	assert.Equal(t, "http://localhost:8080", c.PublicURL)
	assert.Equal(t, "my-module", c.ModuleCode)
	assert.Equal(t, "my-module", c.ModuleIntegrationCode, "MODULE_INTEGRATION_CODE defaults to MODULE_CODE")
	assert.Equal(t, "my-module", c.ModuleName, "MODULE_NAME defaults to MODULE_CODE")
	assert.Empty(t, c.ModuleLogoURL)
	assert.Equal(t, config.SecretList{"partner-secret"}, c.ModuleSecrets)
	assert.Equal(t, config.List{"integration_read", "integration_write"}, c.ModuleScopes)
	assert.True(t, c.RedisURL.IsZero())
	assert.Empty(t, c.RedisClusterAddrs)
	assert.True(t, c.UsesEmbeddedStore())
	assert.Equal(t, config.List(config.DefaultCRMHosts), c.CRMAllowedHosts)
	assert.Equal(t, config.List{"retailcrm.ru", "retailcrm.pro", "retailcrm.es", "retailcrm.io", "simla.com", "simla.io"}, c.CRMAllowedHosts)
	assert.False(t, c.CRMAllowInsecure)
	assert.Equal(t, 10*time.Second, c.CRMTimeout)
	assert.Empty(t, c.EncryptionKeys)
	assert.Empty(t, c.AdminTokens)
	assert.Equal(t, "text", c.LogFormat)
	assert.Equal(t, slog.LevelInfo, c.LogLevel)
	assert.Equal(t, config.DefaultFailedRequestsPerMinute, c.FailedRequestsPerMinute, "the constant is the default")
	assert.Equal(t, config.DefaultShopKeyAttemptsPerMinute, c.ShopKeyAttemptsPerMinute, "the constant is the default")
	assert.Equal(t, "http://localhost:8080/register", c.PublicURLFor("/register"))
	assert.False(t, c.SecureCookies())
}

func TestLoadReadsEveryVariable(t *testing.T) {
	setEnv(t, map[string]string{
		"LISTEN_ADDR":             "127.0.0.1:0",
		"PUBLIC_URL":              "https://module.example.com/",
		"MODULE_INTEGRATION_CODE": "my-integration",
		"MODULE_NAME":             "My module",
		"MODULE_LOGO_URL":         "https://module.example.com/logo.svg",
		"MODULE_SECRETS":          "current,old",
		"MODULE_SCOPES":           "integration_read, order_read",
		"REDIS_URL":               "redis://:hunter2@redis.internal:6379/0",
		"CRM_ALLOWED_HOSTS":       "RetailCRM.ru., crm.example.com",
		"CRM_ALLOW_INSECURE":      "true",
		"CRM_TIMEOUT":             "3s",
		"ENCRYPTION_KEY":          key1B64,
		"ADMIN_TOKEN":             "admin-token-0123456789",
		"LOG_FORMAT":              "json",
		"LOG_LEVEL":               "debug",
	})

	c, err := config.Load()
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:0", c.ListenAddr)
	assert.Equal(t, "https://module.example.com/register", c.PublicURLFor("/register"))
	assert.True(t, c.SecureCookies())
	assert.Equal(t, "my-integration", c.ModuleIntegrationCode)
	assert.Equal(t, "My module", c.ModuleName)
	assert.Equal(t, "https://module.example.com/logo.svg", c.LogoURL())
	assert.Equal(t, config.SecretList{"current", "old"}, c.ModuleSecrets, "first is current, all verify")
	assert.Equal(t, config.List{"integration_read", "order_read"}, c.ModuleScopes, "spaces around scopes are trimmed")
	assert.Equal(t, "redis://:hunter2@redis.internal:6379/0", c.RedisURL.Reveal())
	assert.False(t, c.UsesEmbeddedStore())
	assert.Equal(t, config.List{"retailcrm.ru", "crm.example.com"}, c.CRMAllowedHosts, "hosts are lowercased and trimmed")
	assert.True(t, c.CRMAllowInsecure)
	assert.Equal(t, 3*time.Second, c.CRMTimeout)
	assert.Equal(t, config.EncryptionKeys{key1}, c.EncryptionKeys)
	assert.Equal(t, config.SecretList{"admin-token-0123456789"}, c.AdminTokens)
	assert.Equal(t, "json", c.LogFormat)
	assert.Equal(t, slog.LevelDebug, c.LogLevel)
}

func TestLoadEncryptionKeyListDecodesEveryKey(t *testing.T) {
	// The second one in URL-safe base64 without padding: both spellings are
	// what people paste.
	urlSafe := strings.TrimRight(base64.URLEncoding.EncodeToString(key2), "=")
	setEnv(t, map[string]string{"ENCRYPTION_KEY": key1B64 + ", " + urlSafe})

	c, err := config.Load()
	require.NoError(t, err)
	require.Len(t, c.EncryptionKeys, 2)
	assert.Equal(t, key1, c.EncryptionKeys[0], "the first key is current")
	assert.Equal(t, key2, c.EncryptionKeys[1])
}

// Each bad value stops the start with a line that names the variable and
// never repeats the value: values here look like secrets on purpose.
func TestLoadRejectsBadValuesWithoutQuotingThem(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string // the error must contain "config: " + wantVar
		secret  string // must not appear in the error; defaults to every value in env
	}{
		{"encryption key not base64", map[string]string{"ENCRYPTION_KEY": "not-base64-SECRETVALUE!"}, "ENCRYPTION_KEY", ""},
		{"encryption key base64url of the wrong size", map[string]string{"ENCRYPTION_KEY": "not-base64-SECRETVALUE"}, "ENCRYPTION_KEY", ""},
		{"encryption key too short", map[string]string{"ENCRYPTION_KEY": base64.StdEncoding.EncodeToString([]byte("SHORTSECRETKEY"))}, "ENCRYPTION_KEY", ""},
		{"second encryption key bad", map[string]string{"ENCRYPTION_KEY": key1B64 + ",not-base64-SECRETVALUE!"}, "ENCRYPTION_KEY", "not-base64-SECRETVALUE"},
		{"redis url unparsable", map[string]string{"REDIS_URL": "redis://:hunter2@[bad", "ENCRYPTION_KEY": key1B64}, "REDIS_URL", "hunter2"},
		{"redis url wrong scheme", map[string]string{"REDIS_URL": "http://:hunter2@redis:6379", "ENCRYPTION_KEY": key1B64}, "REDIS_URL", "hunter2"},
		{"crm timeout not a duration", map[string]string{"CRM_TIMEOUT": "banana"}, "CRM_TIMEOUT", ""},
		{"crm timeout negative", map[string]string{"CRM_TIMEOUT": "-5s"}, "CRM_TIMEOUT", ""},
		{"crm timeout zero", map[string]string{"CRM_TIMEOUT": "0s"}, "CRM_TIMEOUT", ""},
		{"session ttl not a duration", map[string]string{"SESSION_TTL": "hunter2"}, "SESSION_TTL", ""},
		{"insecure flag not a bool", map[string]string{"CRM_ALLOW_INSECURE": "hunter2"}, "CRM_ALLOW_INSECURE", ""},
		{"log level unknown", map[string]string{"LOG_LEVEL": "hunter2"}, "LOG_LEVEL", ""},
		{"log format xml", map[string]string{"LOG_FORMAT": "xml"}, "LOG_FORMAT", ""},
		{"admin token too short", map[string]string{"ADMIN_TOKEN": "hunter2"}, "ADMIN_TOKEN", ""},
		{"one empty secret in the list", map[string]string{"MODULE_SECRETS": "hunter2-secret,"}, "MODULE_SECRETS", "hunter2-secret"},
		{"module secrets empty", map[string]string{"MODULE_SECRETS": ""}, "MODULE_SECRETS", ""},
		{"module code empty", map[string]string{"MODULE_CODE": ""}, "MODULE_CODE", ""},
		{"module code has a space", map[string]string{"MODULE_CODE": "my module"}, "MODULE_CODE", ""},
		{"public url not absolute", map[string]string{"PUBLIC_URL": "module.example.com/hunter2"}, "PUBLIC_URL", ""},
		{"public url with password", map[string]string{"PUBLIC_URL": "https://user:hunter2@module.example.com"}, "PUBLIC_URL", "hunter2"},
		{"logo url not absolute", map[string]string{"MODULE_LOGO_URL": "logo-hunter2.svg"}, "MODULE_LOGO_URL", ""},
		{"redis url and cluster both", map[string]string{"REDIS_URL": "redis://:hunter2@r:6379", "REDIS_CLUSTER_ADDRS": "a:1", "ENCRYPTION_KEY": key1B64}, "REDIS_CLUSTER_ADDRS", "hunter2"},
		{"redis without encryption key", map[string]string{"REDIS_URL": "redis://:hunter2@redis:6379"}, "ENCRYPTION_KEY", "hunter2"},
		{"redis cluster without encryption key", map[string]string{"REDIS_CLUSTER_ADDRS": "10.0.0.1:7000"}, "ENCRYPTION_KEY", ""},
		{"module code missing", map[string]string{"MODULE_CODE": "-"}, "MODULE_CODE", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			_, err := config.Load()
			require.Error(t, err)
			msg := err.Error()
			assert.True(t, strings.HasPrefix(msg, "config: "+tt.wantVar+": "), "error %q must start with config: %s:", msg, tt.wantVar)
			if tt.secret != "" {
				assert.NotContains(t, msg, tt.secret)
			} else {
				for k, v := range tt.env {
					if len(v) >= 4 && k != "MODULE_CODE" { // "my module" is not a secret but check it below
						assert.NotContains(t, msg, v)
					}
				}
			}
			assert.NotContains(t, msg, "hunter2")
			assert.NotContains(t, msg, "SECRETVALUE")
			assert.NotContains(t, msg, "SHORTSECRETKEY")
			assert.NotContains(t, msg, "partner-secret")
			assert.NotContains(t, msg, "\n", "one bad variable, one line")
		})
	}
}

// An unknown scope is named by its position: scope names are public, but
// a secret pasted into MODULE_SCOPES by mistake must not reach the log.
func TestLoadRejectsUnknownScope(t *testing.T) {
	setEnv(t, map[string]string{"MODULE_SCOPES": "integration_read,integration_raed"})
	_, err := config.Load()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "config: MODULE_SCOPES: item #2 is not a scope the CRM knows")
	assert.NotContains(t, err.Error(), "integration_raed")
}

func TestLoadWithNothingSetNamesBothRequiredVariables(t *testing.T) {
	clearEnv(t)
	_, err := config.Load()
	require.Error(t, err)
	assert.Equal(t, []string{
		"config: MODULE_CODE: is required: the module code from the partner account",
		"config: MODULE_SECRETS: is required: the secret from the module card of the partner account",
	}, strings.Split(err.Error(), "\n"))
}

// Every rule Validate checks is reported at once.
func TestLoadReportsEveryBadVariable(t *testing.T) {
	setEnv(t, map[string]string{
		"MODULE_CODE":   "",
		"MODULE_SCOPES": "nope",
		"LOG_FORMAT":    "xml",
		"REDIS_URL":     "redis://:hunter2@redis:6379",
		"ADMIN_TOKEN":   "short",
	})
	_, err := config.Load()
	assertOneLinePerVariable(t, err, "MODULE_CODE", "MODULE_SCOPES", "LOG_FORMAT", "ENCRYPTION_KEY", "ADMIN_TOKEN")
	assert.NotContains(t, err.Error(), "hunter2")
}

// assertOneLinePerVariable checks that err names each variable on a line
// of its own, and nothing else.
func assertOneLinePerVariable(t *testing.T, err error, names ...string) {
	t.Helper()
	require.Error(t, err)
	lines := strings.Split(err.Error(), "\n")
	assert.Len(t, lines, len(names), "one line per bad variable:\n%s", err)
	for _, name := range names {
		assert.Contains(t, err.Error(), "config: "+name+":")
	}
	for _, l := range lines {
		assert.True(t, strings.HasPrefix(l, "config: "), "line %q", l)
	}
}

// validConfig is a Config as a Go literal, the way other packages' tests
// build one: no process environment involved.
func validConfig() config.Config {
	return config.Config{
		ListenAddr:       "127.0.0.1:0",
		PublicURL:        "https://module.example.com",
		ModuleCode:       "my-module",
		ModuleSecrets:    []redact.Secret{"secret"},
		ModuleScopes:     []string{"integration_read", "integration_write"},
		RedisKeyPrefix:   "simpleconnect",
		CRMAllowedHosts:  []string{"retailcrm.ru"},
		CRMTimeout:       10 * time.Second,
		SessionTTL:       time.Hour,
		ShutdownTimeout:  time.Second,
		LogFormat:        "text",
		EncryptionKeys:   nil,
		CRMAllowInsecure: false,
	}.WithDefaults()
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(c *config.Config)
		wantErr string // "" = valid; else a substring of the error
	}{
		{"valid literal", func(*config.Config) {}, ""},
		{"redis with a key", func(c *config.Config) {
			c.RedisURL = "rediss://:pw@redis:6380/1"
			c.EncryptionKeys = config.EncryptionKeys{key1}
		}, ""},
		{"unix socket redis", func(c *config.Config) {
			c.RedisURL = "unix:///run/redis.sock"
			c.EncryptionKeys = config.EncryptionKeys{key1}
		}, ""},
		{"cluster with a key", func(c *config.Config) {
			c.RedisClusterAddrs = []string{"a:7000", "b:7000"}
			c.EncryptionKeys = config.EncryptionKeys{key1}
		}, ""},
		{"empty listen addr", func(c *config.Config) { c.ListenAddr = "" }, "config: LISTEN_ADDR:"},
		{"public url with query", func(c *config.Config) { c.PublicURL = "https://m.example.com/?x=1" }, "config: PUBLIC_URL:"},
		{"public url ftp", func(c *config.Config) { c.PublicURL = "ftp://m.example.com" }, "config: PUBLIC_URL:"},
		{"empty module code", func(c *config.Config) { c.ModuleCode = "" }, "config: MODULE_CODE:"},
		{"module code starting with a dash", func(c *config.Config) { c.ModuleCode = "-x" }, "config: MODULE_CODE:"},
		{"bad integration code", func(c *config.Config) { c.ModuleIntegrationCode = "a b" }, "config: MODULE_INTEGRATION_CODE:"},
		{"logo url relative", func(c *config.Config) { c.ModuleLogoURL = "/logo.svg" }, "config: MODULE_LOGO_URL:"},
		{"no secrets", func(c *config.Config) { c.ModuleSecrets = nil }, "config: MODULE_SECRETS:"},
		{"blank secret", func(c *config.Config) { c.ModuleSecrets = []redact.Secret{"ok", "  "} }, "config: MODULE_SECRETS: item #2 is empty"},
		{"secret with spaces around it", func(c *config.Config) { c.ModuleSecrets = []redact.Secret{"ok", " old"} }, "config: MODULE_SECRETS: item #2 has spaces around it"},
		{"no scopes", func(c *config.Config) { c.ModuleScopes = nil }, "config: MODULE_SCOPES:"},
		{"unknown scope", func(c *config.Config) { c.ModuleScopes = []string{"orders_read"} }, `config: MODULE_SCOPES: item #1 is not a scope`},
		{"redis url without key", func(c *config.Config) { c.RedisURL = "redis://r:6379" }, "config: ENCRYPTION_KEY:"},
		{"cluster without key", func(c *config.Config) { c.RedisClusterAddrs = []string{"a:7000"} }, "config: ENCRYPTION_KEY:"},
		{"redis url and cluster", func(c *config.Config) {
			c.RedisURL = "redis://r:6379"
			c.RedisClusterAddrs = []string{"a:7000"}
			c.EncryptionKeys = config.EncryptionKeys{key1}
		}, "config: REDIS_CLUSTER_ADDRS:"},
		{"key prefix with a brace", func(c *config.Config) { c.RedisKeyPrefix = "a{b" }, "config: REDIS_KEY_PREFIX:"},
		{"empty key prefix", func(c *config.Config) { c.RedisKeyPrefix = "" }, "config: REDIS_KEY_PREFIX:"},
		{"allowed host with a scheme", func(c *config.Config) { c.CRMAllowedHosts = []string{"https://retailcrm.ru"} }, "config: CRM_ALLOWED_HOSTS:"},
		{"allowed host with a wildcard", func(c *config.Config) { c.CRMAllowedHosts = []string{"*.retailcrm.ru"} }, "config: CRM_ALLOWED_HOSTS: item #1"},
		{"allowed hosts with IP addresses", func(c *config.Config) { c.CRMAllowedHosts = []string{"retailcrm.ru", "127.0.0.1", "::1", "[::1]"} }, ""},
		{"allowed host IPv6 with a zone", func(c *config.Config) { c.CRMAllowedHosts = []string{"fe80::1%eth0"} }, "config: CRM_ALLOWED_HOSTS: item #1"},
		{"zero crm timeout", func(c *config.Config) { c.CRMTimeout = 0 }, "config: CRM_TIMEOUT:"},
		{"domain list not a URL", func(c *config.Config) { c.CRMDomainsURLs = []string{"ftp://x"}; c.CRMDomainsRefresh = time.Hour }, "config: CRM_DOMAINS_URL:"},
		{"domain list refreshed every second", func(c *config.Config) {
			c.CRMDomainsURLs = []string{"https://infra-data.retailcrm.tech/crm-domains.json"}
			c.CRMDomainsRefresh = time.Second
		}, "config: CRM_DOMAINS_REFRESH:"},
		{"port zero", func(c *config.Config) { c.CRMAllowedPorts = []uint16{0} }, "config: CRM_ALLOWED_PORTS:"},
		{"negative failure budget", func(c *config.Config) { c.FailedRequestsPerMinute = -1 }, "config: FAILED_REQUESTS_PER_MINUTE:"},
		{"negative shop attempts", func(c *config.Config) { c.ShopKeyAttemptsPerMinute = -1 }, "config: SHOP_KEY_ATTEMPTS_PER_MINUTE:"},
		{"limits off", func(c *config.Config) { c.FailedRequestsPerMinute, c.ShopKeyAttemptsPerMinute = 0, 0 }, ""},
		{"trusted proxy not a CIDR", func(c *config.Config) { c.TrustedProxies = []string{"10.0.0.1"} }, "config: TRUSTED_PROXIES:"},
		{"sentinel without addresses", func(c *config.Config) {
			c.RedisSentinelMaster = "mymaster"
			c.EncryptionKeys = config.EncryptionKeys{key1}
		}, "config: REDIS_SENTINEL_ADDRS:"},
		{"sentinel addresses without master", func(c *config.Config) { c.RedisSentinelAddrs = []string{"s:26379"} }, "config: REDIS_SENTINEL_MASTER:"},
		{"session ttl under a minute", func(c *config.Config) { c.SessionTTL = time.Second }, "config: SESSION_TTL:"},
		{"zero shutdown timeout", func(c *config.Config) { c.ShutdownTimeout = 0 }, "config: SHUTDOWN_TIMEOUT:"},
		{"short admin token", func(c *config.Config) { c.AdminTokens = []redact.Secret{"0123456789abcdef", "short"} }, "config: ADMIN_TOKEN: token #2"},
		{"log format xml", func(c *config.Config) { c.LogFormat = "xml" }, "config: LOG_FORMAT:"},
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
			assert.NotContains(t, err.Error(), "\n", "one broken rule, one line")
		})
	}
}

func TestWithDefaultsDoesNotShareSlices(t *testing.T) {
	hosts := []string{"RetailCRM.ru."}
	c := config.Config{ModuleCode: "m", CRMAllowedHosts: hosts}.WithDefaults()
	assert.Equal(t, config.List{"retailcrm.ru"}, c.CRMAllowedHosts)
	assert.Equal(t, "RetailCRM.ru.", hosts[0], "the caller's slice is left alone")
	assert.Equal(t, "m", c.ModuleIntegrationCode)
	assert.Equal(t, "m", c.ModuleName)
}

// A Config printed or logged whole, by mistake or in a debug line, shows no
// credential: not the module secrets, the Redis password, the admin token
// nor the encryption keys (in any encoding).
func TestConfigPrintsNoSecret(t *testing.T) {
	setEnv(t, map[string]string{
		"MODULE_SECRETS": "module-secret-AAA,module-secret-BBB",
		"REDIS_URL":      "redis://user:redis-password-CCC@redis:6379/0",
		"ENCRYPTION_KEY": key1B64 + "," + key2B64,
		"ADMIN_TOKEN":    "admin-token-DDD-0123456789",
	})
	c, err := config.Load()
	require.NoError(t, err)
	require.Len(t, c.EncryptionKeys, 2)

	secrets := []string{
		"module-secret-AAA", "module-secret-BBB", "redis-password-CCC", "admin-token-DDD",
		key1B64, key2B64,
		base64.RawStdEncoding.EncodeToString(key1), base64.URLEncoding.EncodeToString(key2),
		fmt.Sprintf("%x", key1), fmt.Sprintf("%x", key2), string(key1), string(key2),
		fmt.Sprint(key1), fmt.Sprint(key2), // [161 161 ...]
		fmt.Sprintf("%#v", key1), // []byte{0xa1, ...}
		"161, 161", "0xa1, 0xa1", "0xb2, 0xb2",
	}

	outputs := map[string]string{
		"%v":  fmt.Sprintf("%v", c),
		"%+v": fmt.Sprintf("%+v", c),
		"%#v": fmt.Sprintf("%#v", c),
		"&%v": fmt.Sprintf("%+v", &c),
	}
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		var h slog.Handler
		if format == "json" {
			h = slog.NewJSONHandler(&buf, nil)
		} else {
			h = slog.NewTextHandler(&buf, nil)
		}
		log := slog.New(h)
		log.Info("starting", "config", c)
		log.Info("keys", "keys", c.EncryptionKeys, "redis", c.RedisURL, "secrets", c.ModuleSecrets, "admin", c.AdminTokens)
		log.Info("pointer", slog.Any("config", &c))
		outputs["slog "+format] = buf.String()
	}

	for name, out := range outputs {
		require.NotEmpty(t, out)
		for _, s := range secrets {
			assert.NotContains(t, out, s, "%s shows a secret:\n%s", name, out)
		}
		assert.Contains(t, out, redact.Placeholder, "%s", name)
	}
	// Still useful: the non-secret settings show.
	assert.Contains(t, outputs["%+v"], "my-module")
	assert.Contains(t, outputs["slog json"], "my-module")
}

// RATE_LIMIT_PER_MINUTE limited valid requests too; it is gone, and a
// deployment still setting it is told what replaced it instead of running
// with a limit it believes in.
func TestTheRetiredRateLimitStopsTheStartNamingItsReplacements(t *testing.T) {
	for _, value := range []string{"60", "0", ""} {
		setEnv(t, map[string]string{"RATE_LIMIT_PER_MINUTE": value})
		_, err := config.Load()
		require.Error(t, err, "RATE_LIMIT_PER_MINUTE=%q", value)
		msg := err.Error()
		assert.True(t, strings.HasPrefix(msg, "config: RATE_LIMIT_PER_MINUTE: no longer exists"), msg)
		assert.Contains(t, msg, "FAILED_REQUESTS_PER_MINUTE")
		assert.Contains(t, msg, "SHOP_KEY_ATTEMPTS_PER_MINUTE")
		assert.NotContains(t, msg, "\n", "one line")
	}

	setEnv(t, map[string]string{"RATE_LIMIT_PER_MINUTE": "60", "CRM_TIMEOUT": "banana"})
	_, err := config.Load()
	require.Error(t, err)
	assert.Len(t, strings.Split(err.Error(), "\n"), 2, "reported beside a value envconfig cannot read: %s", err)

	setEnv(t, map[string]string{"FAILED_REQUESTS_PER_MINUTE": "10", "SHOP_KEY_ATTEMPTS_PER_MINUTE": "5"})
	c, err := config.Load()
	require.NoError(t, err)
	assert.Equal(t, 10, c.FailedRequestsPerMinute)
	assert.Equal(t, 5, c.ShopKeyAttemptsPerMinute)
}

// The contract's development mode (CRM_ALLOW_INSECURE alone) reaches a CRM
// on this machine; an explicit allow list alone decides.
func TestInsecureModeDefaultsTheAllowListToTheCRMsDomainsAndThisMachine(t *testing.T) {
	setEnv(t, map[string]string{"CRM_ALLOW_INSECURE": "true"})
	c, err := config.Load()
	require.NoError(t, err)
	assert.Equal(t, append(config.List(config.DefaultCRMHosts), "127.0.0.1", "::1", "localhost"), c.CRMAllowedHosts)

	setEnv(t, map[string]string{"CRM_ALLOW_INSECURE": "true", "CRM_ALLOWED_HOSTS": "retailcrm.ru"})
	c, err = config.Load()
	require.NoError(t, err)
	assert.Equal(t, config.List{"retailcrm.ru"}, c.CRMAllowedHosts, "set: it alone decides")

	setEnv(t, nil)
	c, err = config.Load()
	require.NoError(t, err)
	assert.NotContains(t, c.CRMAllowedHosts, "127.0.0.1", "never outside insecure mode")
}

// Values that cannot be converted at all are each reported too (envconfig
// alone stops at the first), and the environment is left as it was.
func TestLoadReportsEveryValueThatCannotBeRead(t *testing.T) {
	setEnv(t, map[string]string{
		"MODULE_CODE":    "demo",
		"MODULE_SECRETS": "new,,old-secret-value",
		"ADMIN_TOKEN":    "an-admin-token-0123456789, ",
		"CRM_TIMEOUT":    "banana",
	})
	_, err := config.Load()
	assertOneLinePerVariable(t, err, "MODULE_SECRETS", "ADMIN_TOKEN", "CRM_TIMEOUT")
	assert.NotContains(t, err.Error(), "old-secret-value")
	assert.NotContains(t, err.Error(), "an-admin-token")
	assert.Equal(t, "banana", os.Getenv("CRM_TIMEOUT"), "the environment is restored")
	assert.Equal(t, "new,,old-secret-value", os.Getenv("MODULE_SECRETS"))
}
