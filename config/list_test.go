package config_test

import (
	"encoding/base64"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/config"
)

// listVariable is one comma-separated variable: two items that are valid
// for it, the environment it needs beside itself, and how to read it back.
type listVariable struct {
	name   string
	items  [2]string
	needs  map[string]string
	values func(config.Config) []string
}

func strs[T ~string](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = string(x)
	}
	return out
}

var listVariables = []listVariable{
	{"MODULE_SECRETS", [2]string{"new-secret-AAAA", "old-secret-BBBB"}, nil,
		func(c config.Config) []string { return strs(c.ModuleSecrets) }},
	{"MODULE_SCOPES", [2]string{"integration_read", "order_read"}, nil,
		func(c config.Config) []string { return c.ModuleScopes }},
	{"ADMIN_TOKEN", [2]string{"admin-token-0123456789", "admin-token-abcdefghij"}, nil,
		func(c config.Config) []string { return strs(c.AdminTokens) }},
	{"SERVICE_TOKEN", [2]string{"service-token-0123456789", "service-token-abcdefghij"}, nil,
		func(c config.Config) []string { return strs(c.ServiceTokens) }},
	{"ENCRYPTION_KEY", [2]string{key1B64, key2B64}, nil,
		func(c config.Config) []string { return []string{b64(c.EncryptionKeys[0]), b64(c.EncryptionKeys[1])} }},
	{"TOKEN_SIGNING_KEY", [2]string{key1B64, key2B64}, nil,
		func(c config.Config) []string {
			return []string{b64(c.TokenSigningKeys[0]), b64(c.TokenSigningKeys[1])}
		}},
	{"CRM_ALLOWED_HOSTS", [2]string{"retailcrm.ru", "crm.example.com"}, nil,
		func(c config.Config) []string { return c.CRMAllowedHosts }},
	{"CRM_DOMAINS_URL", [2]string{"https://infra.example/crm.json", "https://infra.example/box.json"}, nil,
		func(c config.Config) []string { return c.CRMDomainsURLs }},
	{"CRM_ALLOWED_PORTS", [2]string{"8443", "9443"}, nil,
		func(c config.Config) []string {
			return []string{itoa(c.CRMAllowedPorts[0]), itoa(c.CRMAllowedPorts[1])}
		}},
	{"TRUSTED_PROXIES", [2]string{"10.0.0.0/8", "192.168.0.0/16"}, nil,
		func(c config.Config) []string { return c.TrustedProxies }},
	{"REDIS_CLUSTER_ADDRS", [2]string{"node-a:7000", "node-b:7000"}, map[string]string{"ENCRYPTION_KEY": key1B64},
		func(c config.Config) []string { return c.RedisClusterAddrs }},
	{"REDIS_SENTINEL_ADDRS", [2]string{"sentinel-a:26379", "sentinel-b:26379"},
		map[string]string{"ENCRYPTION_KEY": key1B64, "REDIS_SENTINEL_MASTER": "mymaster"},
		func(c config.Config) []string { return c.RedisSentinelAddrs }},
}

// Every list variable is read by the one parser: items are trimmed, and an
// empty item anywhere stops the start with a line naming the variable and
// the item's position, never a value.
func TestEveryListVariableIsTrimmedAndRefusesEmptyItems(t *testing.T) {
	for _, v := range listVariables {
		t.Run(v.name, func(t *testing.T) {
			a, b := v.items[0], v.items[1]
			env := func(value string) map[string]string {
				m := map[string]string{v.name: value}
				for k, x := range v.needs {
					m[k] = x
				}
				return m
			}

			for _, spelling := range []string{a + "," + b, a + ", " + b, " " + a + " ,\t" + b + " "} {
				setEnv(t, env(spelling))
				c, err := config.Load()
				require.NoError(t, err, "%q", spelling)
				assert.Equal(t, []string{a, b}, v.values(c), "%q: both items, trimmed, in order", spelling)
			}

			for value, pos := range map[string]string{
				a + ",," + b:      "item #2 is empty",
				a + ", ," + b:     "item #2 is empty",
				a + "," + b + ",": "item #3 is empty",
				"," + a:           "item #1 is empty",
				a + ", ":          "item #2 is empty",
			} {
				setEnv(t, env(value))
				_, err := config.Load()
				require.Error(t, err, "%q", value)
				assert.Equal(t, "config: "+v.name+": "+pos, err.Error(), "%q", value)
				assert.NotContains(t, err.Error(), a, "the error never quotes an item")
				assert.NotContains(t, err.Error(), b)
			}
		})
	}
}

// The table above covers every list in Config: a new comma-separated
// variable is added there too, or this fails.
func TestListVariablesCoverEveryListInConfig(t *testing.T) {
	var tested []string
	for _, v := range listVariables {
		tested = append(tested, v.name)
	}
	typ := reflect.TypeOf(config.Config{})
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Type.Kind() == reflect.Slice {
			name := f.Tag.Get("envconfig")
			assert.True(t, slices.Contains(tested, name), "%s (%s) is a list: add it to listVariables", name, f.Name)
		}
	}
}

// What Validate accepts from a Config literal is what Load could produce:
// no item empty or padded, in any list.
func TestValidateAppliesTheListRuleToLiterals(t *testing.T) {
	for _, tt := range []struct {
		mutate func(*config.Config)
		want   string
	}{
		{func(c *config.Config) { c.ModuleSecrets = config.SecretList{"new", " old"} }, "config: MODULE_SECRETS: item #2 has spaces around it"},
		{func(c *config.Config) { c.AdminTokens = config.SecretList{"admin-token-0123456789", ""} }, "config: ADMIN_TOKEN: item #2 is empty"},
		{func(c *config.Config) { c.TrustedProxies = config.List{" 10.0.0.0/8"} }, "config: TRUSTED_PROXIES: item #1 has spaces around it"},
		{func(c *config.Config) { c.CRMDomainsURLs = config.List{"https://a.example/x.json", ""} }, "config: CRM_DOMAINS_URL: item #2 is empty"},
	} {
		c := validConfig()
		tt.mutate(&c)
		err := c.Validate()
		require.Error(t, err)
		assert.Contains(t, strings.Split(err.Error(), "\n"), tt.want)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func itoa(p uint16) string { return strconv.Itoa(int(p)) }
