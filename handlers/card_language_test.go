package handlers

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/i18n"
	"github.com/modulehub/simpleconnect/verify"
)

func TestShopLanguageFollowsTheCRMHost(t *testing.T) {
	for systemURL, want := range map[string]string{
		"https://shop.retailcrm.ru":          "ru",
		"https://SHOP.RetailCRM.RU./":        "ru",
		"https://shop.retailcrm.es":          "es",
		"https://shop.retailcrm.es:8443":     "es",
		"https://shop.simla.com":             "en",
		"https://shop.retailcrm.pro":         "en",
		"https://shop.retailcrm.io":          "en",
		"https://shop.ru.example.com":        "en",
		"http://127.0.0.1:9090":              "en",
		"http://[::1]:9090":                  "en",
		"":                                   "en",
		"not a url at all \x00":              "en",
		"https://xn--80aairftm.retailcrm.ru": "ru",
	} {
		assert.Equal(t, want, ShopLanguage(systemURL), "%q", systemURL)
	}
}

// Every reply's words are in every catalog, and every message a shop owner
// can read is translated: no Russian or Spanish text is the English one.
func TestEveryReplyIsInEveryLanguage(t *testing.T) {
	c := i18n.MustLoad()
	en := c.For("en")
	for _, r := range append(slices.Clone(replies), internalReply) {
		require.True(t, en.Has(r.key), "%s: no catalog key %q", r.code, r.key)
		for _, lang := range []string{"ru", "es"} {
			l := c.For(lang)
			if strings.HasPrefix(r.key, "card.") || strings.HasPrefix(r.key, "admin.") {
				assert.NotEqual(t, en.T(r.key), l.T(r.key), "%s: %q is not translated into %s", r.code, r.key, lang)
			}
		}
	}
}

// The address check's reasons reach the owner in their language: every
// reason the address table can produce has its card.address.<code>, whose
// English text is the reason itself.
func TestEveryAddressReasonIsInEveryLanguage(t *testing.T) {
	b, err := os.ReadFile("../testdata/addresses.json")
	require.NoError(t, err)
	var rows []struct {
		Input    string   `json:"input"`
		Insecure bool     `json:"insecure"`
		Hosts    []string `json:"hosts"`
	}
	require.NoError(t, json.Unmarshal(b, &rows))
	c := i18n.MustLoad()
	codes := map[string]bool{}
	for _, row := range rows {
		p := verify.AddressPolicy{AllowedHosts: append([]string{"retailcrm.ru"}, row.Hosts...), AllowInsecure: row.Insecure}
		_, err := p.Canonical(row.Input)
		var ae *verify.AddressError
		if !errors.As(err, &ae) {
			continue
		}
		codes[ae.Code()] = true
		key := "card.address." + ae.Code()
		require.True(t, c.For("en").Has(key), "reason %q has no %s", ae.Reason(), key)
		assert.Equal(t, ae.Reason(), c.For("en").T(key), key)
		for _, lang := range []string{"ru", "es"} {
			assert.NotEqual(t, ae.Reason(), c.For(lang).T(key), "%s is not translated into %s", key, lang)
		}
	}
	assert.Greater(t, len(codes), 10, "the table reaches most reasons")
}
