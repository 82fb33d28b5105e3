package config_test

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/config"
)

// The README's configuration table is the operator's reference: one row
// per variable Config reads, none other, each with the default the code
// applies.
func TestTheREADMETableMatchesConfig(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	section := string(b)
	start := strings.Index(section, "\n## Configuration")
	require.NotEqual(t, -1, start)
	section = section[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	rows := map[string]string{} // variable → default column
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\|([^|]*)\\|").FindAllStringSubmatch(section, -1) {
		rows[m[1]] = strings.TrimSpace(m[2])
	}

	typ := reflect.TypeOf(config.Config{})
	var names []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := f.Tag.Get("envconfig")
		if name == "" {
			continue
		}
		names = append(names, name)
		def, ok := rows[name]
		if !assert.True(t, ok, "%s has no row in the README's configuration table", name) {
			continue
		}
		if tag := f.Tag.Get("default"); tag != "" {
			assert.Equal(t, "`"+tag+"`", def, "%s: the README's default", name)
		}
	}
	for name := range rows {
		assert.Contains(t, names, name, "the README documents %s, which Config does not read", name)
	}
	assert.Equal(t, "`"+strings.Join(config.DefaultCRMHosts, ",")+"`", rows["CRM_ALLOWED_HOSTS"])
}
