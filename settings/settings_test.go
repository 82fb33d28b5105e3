package settings_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/settings"
)

func TestTheShippedExampleIsValid(t *testing.T) {
	s, err := settings.Load(filepath.Join("..", "settings.example.json"))
	require.NoError(t, err)
	require.Len(t, s.Fields, 4)
	assert.NotEmpty(t, s.Fields[0].Example, "the example shows an example")
	assert.NotEmpty(t, s.Fields[1].Message, "and a message")
	for _, f := range s.Fields {
		for _, lang := range []string{"en", "ru", "es"} {
			assert.NotEmpty(t, f.Label[lang], "%s has a label in %s", f.Name, lang)
		}
	}
}

func TestEmptyPathMeansNoSettings(t *testing.T) {
	s, err := settings.Load("")
	require.NoError(t, err)
	assert.True(t, s.Empty())
}

func TestLoadNamesTheFileAndTheProblem(t *testing.T) {
	dir := t.TempDir()
	_, err := settings.Load(filepath.Join(dir, "missing.json"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing.json")
	assert.Equal(t, 1, strings.Count(err.Error(), "missing.json"), "the path once, not twice: %s", err)

	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"fields":[{"name":"x","type":"color","label":"X"}]}`), 0o600))
	_, err = settings.Load(bad)
	require.Error(t, err)
	assert.Equal(t, "bad.json: field #1 (x): type must be text, secret, select or checkbox", strings.TrimPrefix(err.Error(), dir+"/"))
}

func TestParseRejectsBadSchemas(t *testing.T) {
	cases := []struct {
		name, json, want string
	}{
		{"not JSON", `{"fields":`, "not a settings file: empty or cut short"},
		{"syntax", `{"fields":[}`, "invalid JSON at byte"},
		{"unknown key", `{"fields":[],"extra":1}`, `unknown field "extra"`},
		{"trailing data", `{"fields":[]} {}`, "data after the top-level object"},
		{"wrong type", `{"fields":{}}`, "fields has the wrong type"},
		{"bad name", `{"fields":[{"name":"1x","type":"text","label":"X"}]}`, "name must start with a letter"},
		{"duplicate name", `{"fields":[{"name":"a","type":"text","label":"A"},{"name":"A","type":"text","label":"A"}]}`, "field #2 (A): name is used twice"},
		{"no label", `{"fields":[{"name":"a","type":"text"}]}`, "label is required"},
		{"no type", `{"fields":[{"name":"a","label":"A"}]}`, "type is required"},
		{"bad pattern", `{"fields":[{"name":"a","type":"text","label":"A","pattern":"(("}]}`, "not a valid regular expression"},
		{"pattern on select", `{"fields":[{"name":"a","type":"select","label":"A","pattern":"x","options":[{"value":"x","label":"X"}]}]}`, "pattern is only for text and secret"},
		{"select without options", `{"fields":[{"name":"a","type":"select","label":"A"}]}`, "a select needs options"},
		{"repeated option", `{"fields":[{"name":"a","type":"select","label":"A","options":[{"value":"x","label":"X"},{"value":"x","label":"Y"}]}]}`, "option #2 repeats a value"},
		{"option without label", `{"fields":[{"name":"a","type":"select","label":"A","options":[{"value":"x"}]}]}`, "option #1 needs a label"},
		{"options on text", `{"fields":[{"name":"a","type":"text","label":"A","options":[{"value":"x","label":"X"}]}]}`, "options are only for select"},
		{"secret default", `{"fields":[{"name":"a","type":"secret","label":"A","default":"hunter2"}]}`, "a secret cannot have a default"},
		{"checkbox default", `{"fields":[{"name":"a","type":"checkbox","label":"A","default":"yes"}]}`, `a checkbox's default is "true" or "false"`},
		{"select default", `{"fields":[{"name":"a","type":"select","label":"A","default":"z","options":[{"value":"x","label":"X"}]}]}`, "default is not one of the options"},
		{"text default fails pattern", `{"fields":[{"name":"a","type":"text","label":"A","default":"abc","pattern":"[0-9]+"}]}`, "default does not pass"},
		{"label of wrong shape", `{"fields":[{"name":"a","type":"text","label":7}]}`, "fields.label must be a string or an object of strings per language"},
		{"message without a pattern", `{"fields":[{"name":"a","type":"text","label":"A","message":"Digits"}]}`, "field #1 (a): message is only for a field with a pattern"},
		{"empty message", `{"fields":[{"name":"a","type":"text","label":"A","pattern":"[0-9]+","message":""}]}`, "field #1 (a): message is empty"},
		{"blank message in one language", `{"fields":[{"name":"a","type":"text","label":"A","pattern":"[0-9]+","message":{"en":"Digits","ru":" "}}]}`, "message is empty (ru)"},
		{"message of wrong shape", `{"fields":[{"name":"a","type":"text","label":"A","pattern":"x","message":["x"]}]}`, "fields.message must be a string or an object"},
		{"example on a select", `{"fields":[{"name":"a","type":"select","label":"A","example":"x","options":[{"value":"x","label":"X"}]}]}`, "example is only for text and secret fields"},
		{"example on a checkbox", `{"fields":[{"name":"a","type":"checkbox","label":"A","example":"true"}]}`, "example is only for text and secret fields"},
		{"empty example", `{"fields":[{"name":"a","type":"text","label":"A","example":{}}]}`, "example is empty"},
		{"example fails the pattern", `{"fields":[{"name":"a","type":"text","label":"A","pattern":"[0-9]+","example":"12a"}]}`, "field #1 (a): example does not pass the field's own checks"},
		{"one language's example fails", `{"fields":[{"name":"a","type":"secret","label":"A","pattern":"[a-z]{4}","example":{"en":"abcd","es":"abc"}}]}`, "example (es) does not pass"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := settings.Parse([]byte(tc.json))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}

func TestParseReportsEveryProblemOnOneLine(t *testing.T) {
	_, err := settings.Parse([]byte(`{"fields":[{"name":"a","type":"text"},{"name":"b","type":"x","label":"B"}]}`))
	require.Error(t, err)
	assert.Equal(t, "field #1 (a): label is required; field #2 (b): type must be text, secret, select or checkbox", err.Error())
}

func TestMessageAndExampleArePerLanguage(t *testing.T) {
	s, err := settings.Parse([]byte(`{"fields":[
		{"name":"a","type":"text","label":"A","pattern":"[0-9]{4}","message":{"en":"Four digits","ru":"Четыре цифры"},"example":"1234"},
		{"name":"b","type":"secret","label":"B","example":{"en":"tok_abc","es":"tok_xyz"}}]}`))
	require.NoError(t, err)
	assert.Equal(t, "Четыре цифры", s.Fields[0].Message.In("ru"))
	assert.Equal(t, "Four digits", s.Fields[0].Message.In("es"), "missing language: English")
	assert.Equal(t, "1234", s.Fields[0].Example.In("ru"), "a plain string is every language")
	assert.Equal(t, "tok_xyz", s.Fields[1].Example.In("es"))
	assert.Empty(t, s.Fields[1].Message.In("en"), "no message: the page words the problem itself")
}

func TestDigitsOnlyPatternsAreRecognised(t *testing.T) {
	cases := []struct {
		pattern string
		want    settings.Digits
	}{
		{`[0-9]{3,12}`, settings.Digits{Only: true, Min: 3, Max: 12}},
		{`\d+`, settings.Digits{Only: true, Min: 1, Max: -1}},
		{`\d*`, settings.Digits{Only: true, Min: 0, Max: -1}},
		{`[0-9]{6}`, settings.Digits{Only: true, Min: 6, Max: 6}},
		{`\d\d\d`, settings.Digits{Only: true, Min: 3, Max: 3}},
		{`([0-9]{4})`, settings.Digits{Only: true, Min: 4, Max: 4}},
		{`[0-9]{2,}`, settings.Digits{Only: true, Min: 2, Max: -1}},
		{`([0-9]{4})?`, settings.Digits{Only: true, Min: 4, Max: 4}}, // an empty value never meets the pattern
		{`\d{3,4}|\d{5}`, settings.Digits{Only: true, Min: 3, Max: 5}},
		// Alternations of counts: the counts are listed.
		{`[0-9]{10}|[0-9]{12}`, settings.Digits{Only: true, Min: 10, Max: 12, Lengths: []int{10, 12}}},
		{`\d{10}|\d{10}\d{2}`, settings.Digits{Only: true, Min: 10, Max: 12, Lengths: []int{10, 12}}}, // RE2 factors it: \d{10}(?:|\d{2})
		{`(?:[0-9]{8}|[0-9]{9}|[0-9]{11})`, settings.Digits{Only: true, Min: 8, Max: 11, Lengths: []int{8, 9, 11}}},
		{`(\d{3}){1,2}`, settings.Digits{Only: true, Min: 3, Max: 6, Lengths: []int{3, 6}}}, // not "3 to 6"
		// Digits only (a numeric keyboard), but the counts do not say it all.
		{`7[0-9]{10}`, settings.Digits{Only: true, Min: 11, Max: 11, Partial: true}},
		{`[1-9][0-9]*`, settings.Digits{Only: true, Min: 1, Max: -1, Partial: true}},
		{`12|34`, settings.Digits{Only: true, Min: 2, Max: 2, Partial: true}},
		{`\d{3}|\d{5,}`, settings.Digits{Only: true, Min: 3, Max: -1, Partial: true}},
		{`\d{1,7}|\d{9}`, settings.Digits{Only: true, Min: 1, Max: 9, Partial: true}}, // eight counts: too many to list
		{`(\d{3})+`, settings.Digits{Only: true, Min: 3, Max: -1, Partial: true}},
		{`[0-9]{2}-[0-9]{2}`, settings.Digits{}},
		{`[0-9a-f]{8}`, settings.Digits{}},
		{`\d+|x`, settings.Digits{}},
		{`()`, settings.Digits{}},
		{`[A-Za-z0-9_-]{16,128}`, settings.Digits{}},
		{`.*`, settings.Digits{}},
	}
	for _, tc := range cases {
		t.Run(tc.pattern, func(t *testing.T) {
			pattern, err := json.Marshal(tc.pattern)
			require.NoError(t, err)
			// A message, so that every pattern loads; whether one is needed
			// is TestAPatternThePageCannotWordNeedsAMessage's.
			s, err := settings.Parse([]byte(`{"fields":[{"name":"a","type":"text","label":"A","message":"M","pattern":` + string(pattern) + `}]}`))
			require.NoError(t, err)
			assert.Equal(t, tc.want, s.Fields[0].Digits())
			assert.Equal(t, tc.want.Only && !tc.want.Partial, tc.want.Worded())
		})
	}
	s, err := settings.Parse([]byte(`{"fields":[{"name":"a","type":"text","label":"A"}]}`))
	require.NoError(t, err)
	assert.False(t, s.Fields[0].Digits().Only, "no pattern: any text")
}

// Issue 14: a refused value says what is expected. A pattern the page
// cannot put in words itself needs the schema's message, or the file does
// not load (the service does not start), naming the field and the fix.
func TestAPatternThePageCannotWordNeedsAMessage(t *testing.T) {
	for _, pattern := range []string{`[A-Z]{3}`, `[A-Za-z0-9_-]{16,128}`, `7[0-9]{10}`, `\d{3}|\d{5,}`} {
		for _, typ := range []string{"text", "secret"} {
			t.Run(typ+" "+pattern, func(t *testing.T) {
				field := map[string]any{"name": "code", "type": typ, "label": "Code", "pattern": pattern}
				_, err := settings.Parse(schemaOf(t, field))
				require.Error(t, err)
				assert.Equal(t, `field #1 (code): pattern needs a "message" saying what a valid value looks like (a string, or one per language): the page words only digits-only patterns such as [0-9]{3,12} or [0-9]{10}|[0-9]{12} itself`, err.Error())

				field["example"] = "ABC" // an example alone does not say what the rule is
				if pattern != `[A-Z]{3}` {
					delete(field, "example")
				}
				_, err = settings.Parse(schemaOf(t, field))
				require.ErrorContains(t, err, `pattern needs a "message"`)

				field["message"] = map[string]string{"en": "Three capital letters.", "ru": "Три заглавные буквы."}
				_, err = settings.Parse(schemaOf(t, field))
				require.NoError(t, err, "with a message it loads")
			})
		}
	}
	for _, pattern := range []string{`[0-9]{3,12}`, `\d+`, `[0-9]{10}|[0-9]{12}`} {
		_, err := settings.Parse(schemaOf(t, map[string]any{"name": "n", "type": "text", "label": "N", "pattern": pattern}))
		assert.NoError(t, err, "%s is worded by the page: no message needed", pattern)
	}
}

// schemaOf is a schema file of one field.
func schemaOf(t *testing.T, field map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"fields": []any{field}})
	require.NoError(t, err)
	return b
}

func TestLocalizedFallsBack(t *testing.T) {
	s, err := settings.Parse([]byte(`{"fields":[
		{"name":"a","type":"text","label":{"ru":"Русский","en":"English"}},
		{"name":"b","type":"text","label":"Plain"},
		{"name":"c","type":"text","label":{"es":"Solo","ru":"Только"}}]}`))
	require.NoError(t, err)
	assert.Equal(t, "Русский", s.Fields[0].Label.In("ru"))
	assert.Equal(t, "English", s.Fields[0].Label.In("es"), "missing language: English")
	assert.Equal(t, "Plain", s.Fields[1].Label.In("ru"))
	assert.Equal(t, "Solo", s.Fields[2].Label.In("en"), "no English: the first language alphabetically")
}

func example(t *testing.T) settings.Schema {
	t.Helper()
	s, err := settings.Load(filepath.Join("..", "settings.example.json"))
	require.NoError(t, err)
	return s
}

const goodToken = "tok_0123456789abcdef"

func TestCheck(t *testing.T) {
	s := example(t)
	saved := map[string]string{"account_id": "123", "api_token": goodToken, "environment": "sandbox", "sync_stock": "true"}
	cases := []struct {
		name     string
		sub      settings.Submission
		saved    map[string]string
		want     map[string]string
		problems map[string]settings.Problem
	}{
		{
			name: "everything good, unticked checkbox is false, spaces trimmed",
			sub:  settings.Submission{Values: map[string]string{"account_id": " 4567 ", "api_token": goodToken + "\n", "environment": "production"}},
			want: map[string]string{"account_id": "4567", "api_token": goodToken, "environment": "production", "sync_stock": "false"},
		},
		{
			name:  "an empty secret keeps the saved one",
			sub:   settings.Submission{Values: map[string]string{"account_id": "123", "api_token": "", "environment": "sandbox", "sync_stock": "on"}},
			saved: saved,
			want:  map[string]string{"account_id": "123", "api_token": goodToken, "environment": "sandbox", "sync_stock": "true"},
		},
		{
			name:     "a required secret is not cleared",
			sub:      settings.Submission{Values: map[string]string{"account_id": "123", "environment": "sandbox"}, Clear: map[string]bool{"api_token": true}},
			saved:    saved,
			want:     map[string]string{"account_id": "123", "api_token": goodToken, "environment": "sandbox", "sync_stock": "false"},
			problems: nil,
		},
		{
			name:     "empty required fields and no saved secret",
			sub:      settings.Submission{Values: map[string]string{"account_id": "  ", "environment": ""}},
			problems: map[string]settings.Problem{"account_id": settings.Required, "api_token": settings.Required, "environment": settings.Required},
		},
		{
			name:     "pattern, choice, length and control characters",
			sub:      settings.Submission{Values: map[string]string{"account_id": "12a", "api_token": "short", "environment": "staging"}},
			problems: map[string]settings.Problem{"account_id": settings.Mismatch, "api_token": settings.Mismatch, "environment": settings.Choice},
		},
		{
			name:     "too long and control characters",
			sub:      settings.Submission{Values: map[string]string{"account_id": strings.Repeat("1", settings.MaxValueLen+1), "api_token": "tok_01234567\x0089abcdef", "environment": "sandbox"}},
			problems: map[string]settings.Problem{"account_id": settings.TooLong, "api_token": settings.Invalid},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, problems := s.Check(tc.sub, tc.saved)
			assert.Equal(t, tc.problems, nilIfEmpty(problems))
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestCheckClearsAnOptionalSecretAndDropsUnknownValues(t *testing.T) {
	s, err := settings.Parse([]byte(`{"fields":[{"name":"token","type":"secret","label":"T"},{"name":"on","type":"checkbox","label":"On","required":true}]}`))
	require.NoError(t, err)
	got, problems := s.Check(settings.Submission{
		Values: map[string]string{"on": "on", "injected": "x"}, Clear: map[string]bool{"token": true},
	}, map[string]string{"token": "old-secret", "removed_field": "y"})
	require.Empty(t, problems)
	assert.Equal(t, map[string]string{"token": "", "on": "true"}, got)

	_, problems = s.Check(settings.Submission{}, nil)
	assert.Equal(t, map[string]settings.Problem{"on": settings.Required}, problems, "a required checkbox must be ticked")
}

func TestValueShowsSavedElseDefault(t *testing.T) {
	s := example(t)
	env, ok := s.Field("environment")
	require.True(t, ok)
	assert.Equal(t, "production", env.Value(nil))
	assert.Equal(t, "sandbox", env.Value(map[string]string{"environment": "sandbox"}))
	tok, ok := s.Field("api_token")
	require.True(t, ok)
	assert.False(t, tok.HasSaved(nil))
	assert.True(t, tok.HasSaved(map[string]string{"api_token": goodToken}))
	_, ok = s.Field("nope")
	assert.False(t, ok)
}

func nilIfEmpty(m map[string]settings.Problem) map[string]settings.Problem {
	if len(m) == 0 {
		return nil
	}
	return m
}
