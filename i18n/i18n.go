package i18n

import (
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"

	"golang.org/x/text/language"
)

//go:embed catalogs/*.json
var catalogFS embed.FS

// Default is the language used when nothing the browser asks for is
// offered, and the fallback for a missing key.
const Default = "en"

// Langs are the offered languages, in the switcher's order.
var Langs = []string{"en", "ru", "es"}

// Catalogs are the loaded message catalogs.
type Catalogs struct {
	msgs    map[string]map[string]string
	matcher language.Matcher
}

// Load reads the embedded catalogs.
func Load() (*Catalogs, error) {
	c := &Catalogs{msgs: map[string]map[string]string{}}
	tags := make([]language.Tag, 0, len(Langs))
	for _, l := range Langs {
		b, err := catalogFS.ReadFile(path.Join("catalogs", l+".json"))
		if err != nil {
			return nil, fmt.Errorf("i18n: %w", err)
		}
		m := map[string]string{}
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("i18n: catalog %s: %w", l, err)
		}
		c.msgs[l] = m
		tags = append(tags, language.MustParse(l))
	}
	c.matcher = language.NewMatcher(tags)
	return c, nil
}

// MustLoad is Load for catalogs that are part of the binary: a broken one
// is a bug the tests catch.
func MustLoad() *Catalogs {
	c, err := Load()
	if err != nil {
		panic(err)
	}
	return c
}

// Supported reports whether lang is an offered language code.
func (c *Catalogs) Supported(lang string) bool { return slices.Contains(Langs, lang) }

// Match picks the offered language that best fits an Accept-Language
// header; Default when none does or the header is empty or malformed.
func (c *Catalogs) Match(acceptLanguage string) string {
	lang, _ := c.MatchHeader(acceptLanguage)
	return lang
}

// MatchHeader is Match that also says whether the header asked for one of
// the offered languages at all (ok false: empty, malformed, "*" or only
// other languages), so a caller can fall back to another hint first.
func (c *Catalogs) MatchHeader(acceptLanguage string) (lang string, ok bool) {
	tags, _, err := language.ParseAcceptLanguage(acceptLanguage)
	if err != nil || len(tags) == 0 {
		return Default, false
	}
	_, i, conf := c.matcher.Match(tags...)
	if conf == language.No {
		return Default, false
	}
	return Langs[i], true
}

// Keys lists a catalog's keys, sorted.
func (c *Catalogs) Keys(lang string) []string {
	keys := make([]string, 0, len(c.msgs[lang]))
	for k := range c.msgs[lang] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// For returns the words of one language (Default when lang is not offered).
func (c *Catalogs) For(lang string) Localizer {
	if !c.Supported(lang) {
		lang = Default
	}
	return Localizer{lang: lang, c: c}
}

// Localizer looks up one language's words.
type Localizer struct {
	lang string
	c    *Catalogs
}

// Lang is the language code.
func (l Localizer) Lang() string { return l.lang }

// Has reports whether the key exists (in this language or the default).
func (l Localizer) Has(key string) bool {
	_, ok := l.lookup(key)
	return ok
}

// T returns the text of key; with args, the text is a fmt format ("%s").
func (l Localizer) T(key string, args ...any) string {
	s, ok := l.lookup(key)
	if !ok {
		return key
	}
	if len(args) > 0 {
		return fmt.Sprintf(s, args...)
	}
	return strings.ReplaceAll(s, "%%", "%")
}

func (l Localizer) lookup(key string) (string, bool) {
	if l.c == nil {
		return "", false
	}
	if s, ok := l.c.msgs[l.lang][key]; ok {
		return s, true
	}
	s, ok := l.c.msgs[Default][key]
	return s, ok
}
