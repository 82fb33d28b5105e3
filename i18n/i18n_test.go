package i18n_test

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/i18n"
)

var verbRe = regexp.MustCompile(`%[a-z%]`)

func TestEveryCatalogHasEveryKey(t *testing.T) {
	c, err := i18n.Load()
	require.NoError(t, err)
	want := c.Keys(i18n.Default)
	require.NotEmpty(t, want)
	for _, lang := range i18n.Langs {
		t.Run(lang, func(t *testing.T) {
			assert.Equal(t, want, c.Keys(lang), "the same keys as the %s catalog, no more, no fewer", i18n.Default)
			l := c.For(lang)
			for _, key := range want {
				text := l.T(key)
				assert.NotEmpty(t, text, key)
				assert.NotEqual(t, key, text, "%s is translated", key)
				// Same placeholders, so a translation never shows %!s(MISSING).
				assert.Equal(t, verbRe.FindAllString(c.For(i18n.Default).T(key), -1), verbRe.FindAllString(text, -1), "placeholders of %s", key)
			}
		})
	}
}

func TestMatchPicksTheBestOfferedLanguage(t *testing.T) {
	c := i18n.MustLoad()
	for header, want := range map[string]string{
		"":                            "en",
		"ru-RU,ru;q=0.9,en-US;q=0.8":  "ru",
		"es-MX,es;q=0.9":              "es",
		"es-419":                      "es",
		"de-DE,de;q=0.9":              "en",
		"de-DE,es;q=0.5":              "es",
		"en-GB,en;q=0.9,ru;q=0.8":     "en",
		"*":                           "en",
		"this is ;;; not a header===": "en",
	} {
		assert.Equal(t, want, c.Match(header), "Accept-Language: %q", header)
	}
}

func TestLookupFallsBack(t *testing.T) {
	c := i18n.MustLoad()
	assert.Equal(t, "Русский", c.For("ru").T("lang.name"))
	assert.Equal(t, "en", c.For("fr").Lang(), "an unoffered language is the default")
	assert.Equal(t, "no.such.key", c.For("ru").T("no.such.key"), "a missing key shows itself, never an empty string")
	assert.False(t, c.For("ru").Has("no.such.key"))
	assert.True(t, c.For("es").Has("lang.name"))
	assert.Equal(t, "Switch the module off?", c.For("en").T("disconnect.confirm.title"))
	assert.Contains(t, c.For("en").T("expired.step2", "Demo"), "“Demo”")
	assert.True(t, c.Supported("es"))
	assert.False(t, c.Supported("EN"), "codes are exact: the switcher sends lower case")
	var zero i18n.Localizer
	assert.Equal(t, "x", zero.T("x"), "the zero Localizer is safe")
}

func TestMatchHeaderSaysWhetherALanguageWasAskedFor(t *testing.T) {
	c := i18n.MustLoad()
	for header, want := range map[string]struct {
		lang string
		ok   bool
	}{
		"":                {"en", false},
		"*":               {"en", false},
		"de-DE,de;q=0.9":  {"en", false},
		"garbage;;;===":   {"en", false},
		"en-US":           {"en", true},
		"ru":              {"ru", true},
		"es-419,en;q=0.5": {"es", true},
		"de-DE,ru;q=0.5":  {"ru", true},
	} {
		lang, ok := c.MatchHeader(header)
		assert.Equal(t, want.lang, lang, "Accept-Language: %q", header)
		assert.Equal(t, want.ok, ok, "Accept-Language: %q", header)
	}
}
