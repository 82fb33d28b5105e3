package handlers

import (
	"io/fs"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/i18n"
	"github.com/modulehub/simpleconnect/settings"
	"github.com/modulehub/simpleconnect/store"
)

// Every word a page can show is in the catalogs (i18n checks that every
// catalog has the same keys, so English is enough here).
func TestEveryKeyThePagesUseIsInTheCatalogs(t *testing.T) {
	en := i18n.MustLoad().For("en")
	var keys []string

	// Keys written out in templates ({{.L.T "key"}}) and in Go (l.T("key")).
	literal := regexp.MustCompile(`\bT[ (]"([a-z0-9_.]+)"`)
	for _, dir := range []fs.FS{templateFS} {
		err := fs.WalkDir(dir, ".", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(dir, path)
			require.NoError(t, err)
			for _, m := range literal.FindAllStringSubmatch(string(b), -1) {
				keys = append(keys, m[1])
			}
			return nil
		})
		require.NoError(t, err)
	}
	require.Greater(t, len(keys), 30, "the pattern finds the templates' keys")

	// Keys built at run time.
	for _, st := range store.Statuses {
		keys = append(keys, "status."+string(st), "status."+string(st)+".help", "disconnect.unavailable."+string(st))
	}
	for _, p := range []settings.Problem{settings.Required, settings.Mismatch, settings.Choice, settings.TooLong, settings.Invalid} {
		keys = append(keys, "settings.problem."+string(p))
	}
	keys = append(keys, "settings.problem.required.select", "settings.problem.required.checkbox", "settings.problem.kept_expired")
	for _, r := range append(replies, internalReply) {
		keys = append(keys, "error."+r.code)
	}
	keys = append(keys, "lang.name", "date.never", "settings.saved", "disconnect.done", "disconnect.failed", "disconnect.crm_said",
		"signedout.title", "signedout.text", "settings.choose", "settings.errors.title_prefix", "account.title")
	for _, code := range []string{"crm_denied", "crm_unavailable", "busy", "crm_payment_required", "crm_no_account", "crm_unexpected", "not_connected", "bad_system_url"} {
		keys = append(keys, "disconnect.failed."+code)
	}
	for _, k := range keys {
		assert.True(t, en.Has(k), "catalog key %q: add it to every i18n/catalogs/*.json", k)
	}
}

// The Go code's own l.T("...") calls: the same check, over the source.
func TestEveryKeyTheCodeUsesIsInTheCatalogs(t *testing.T) {
	en := i18n.MustLoad().For("en")
	re := regexp.MustCompile(`\.T\("([a-z0-9_.]+)"`)
	files, err := fs.Glob(osDirFS("."), "*.go")
	require.NoError(t, err)
	found := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := fs.ReadFile(osDirFS("."), f)
		require.NoError(t, err)
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			found++
			assert.True(t, en.Has(m[1]) || m[1][len(m[1])-1] == '.', "%s: catalog key %q", f, m[1])
		}
	}
	assert.Greater(t, found, 10)
}

func osDirFS(dir string) fs.FS { return os.DirFS(dir) }
