package settings

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Type is the kind of input a field is.
type Type string

// The field types.
const (
	Text     Type = "text"
	Secret   Type = "secret"   // shown masked, never sent back to the browser
	Select   Type = "select"   // one of Options
	Checkbox Type = "checkbox" // "true" or "false"
)

// Limits on a schema file and on submitted values.
const (
	MaxFileSize = 1 << 20
	MaxFields   = 50
	MaxValueLen = 2048 // bytes, per submitted value
)

// Checkbox values as stored.
const (
	On  = "true"
	Off = "false"
)

// Localized is a string per language code ("en", "ru", "es"). In the file it is
// either such an object or a plain string meaning every language.
type Localized map[string]string

// UnmarshalJSON accepts "text" and {"en": "...", "ru": "..."}.
func (t *Localized) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*t = Localized{"": s}
		return nil
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		// The decoder adds the field's path to an UnmarshalTypeError.
		return &json.UnmarshalTypeError{Value: "a string or an object of strings per language", Type: reflect.TypeFor[Localized]()}
	}
	*t = m
	return nil
}

// In returns the text in lang, else English, else the plain string, else
// the first language in alphabetical order, else "".
func (t Localized) In(lang string) string {
	for _, l := range []string{lang, "en", ""} {
		if v := t[l]; v != "" {
			return v
		}
	}
	langs := make([]string, 0, len(t))
	for l, v := range t {
		if v != "" {
			langs = append(langs, l)
		}
	}
	if len(langs) == 0 {
		return ""
	}
	sort.Strings(langs)
	return t[langs[0]]
}

func (t Localized) empty() bool { return t.In("") == "" }

// blank reports a text that shows nothing in some language: none at all
// ({} or ""), or a blank one ({"ru": " "}); lang names that language.
func (t Localized) blank() (lang string, blank bool) {
	if t.empty() {
		return "", true
	}
	for _, l := range sortedLangs(t) {
		if strings.TrimSpace(t[l]) == "" {
			return l, true
		}
	}
	return "", false
}

// Option is one choice of a select field.
type Option struct {
	Value string    `json:"value"`
	Label Localized `json:"label"`
}

// Field is one connection variable.
type Field struct {
	Name     string    `json:"name"`
	Label    Localized `json:"label"`
	Type     Type      `json:"type"`
	Required bool      `json:"required"`
	Default  string    `json:"default"`
	Pattern  string    `json:"pattern"` // RE2, matched against the whole value
	Options  []Option  `json:"options"`
	Help     Localized `json:"help"`
	// Message says what a valid value looks like; the page shows it, in
	// place of the built-in wording, when a value does not match Pattern.
	Message Localized `json:"message"`
	// Example is a valid value (text and secret), shown under the label and
	// with a format problem.
	Example Localized `json:"example"`

	re     *regexp.Regexp
	digits Digits
}

// Schema is the module's connection variables, in display order. The zero
// Schema has none: the account page then shows no settings section.
type Schema struct {
	Fields []Field `json:"fields"`
}

// Empty reports whether the schema declares no field.
func (s Schema) Empty() bool { return len(s.Fields) == 0 }

// Field returns the field with this name.
func (s Schema) Field(name string) (Field, bool) {
	for _, f := range s.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// Load reads and validates a schema file. An empty path is the embedded
// default: no connection variables.
func Load(path string) (Schema, error) {
	if path == "" {
		return Schema{}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return Schema{}, fmt.Errorf("cannot read %s: %w", path, unwrapPathError(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return Schema{}, fmt.Errorf("cannot read %s: %w", path, unwrapPathError(err))
	}
	s, err := Parse(b)
	if err != nil {
		return Schema{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// unwrapPathError drops the *PathError's own copy of the path.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

var nameRe = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]{0,63}$`)

// Parse decodes and validates a schema: unknown keys and trailing data are
// rejected, and every problem is reported on one line, "; "-separated.
func Parse(b []byte) (Schema, error) {
	if len(b) > MaxFileSize {
		return Schema{}, fmt.Errorf("larger than %d bytes", MaxFileSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s Schema
	if err := dec.Decode(&s); err != nil {
		return Schema{}, fmt.Errorf("not a settings file: %w", jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Schema{}, errors.New("not a settings file: data after the top-level object")
	}
	var problems []string
	bad := func(f Field, i int, why string, args ...any) {
		where := fmt.Sprintf("field #%d", i+1)
		if f.Name != "" {
			where += fmt.Sprintf(" (%s)", f.Name)
		}
		problems = append(problems, where+": "+fmt.Sprintf(why, args...))
	}
	if len(s.Fields) > MaxFields {
		problems = append(problems, fmt.Sprintf("at most %d fields", MaxFields))
	}
	seen := map[string]bool{}
	for i := range s.Fields {
		f := &s.Fields[i]
		switch {
		case !nameRe.MatchString(f.Name):
			bad(*f, i, "name must start with a letter and have only letters, digits and _ (at most 64)")
		case seen[strings.ToLower(f.Name)]:
			bad(*f, i, "name is used twice")
		}
		seen[strings.ToLower(f.Name)] = true
		if f.Label.empty() {
			bad(*f, i, "label is required")
		}
		switch f.Type {
		case Text, Secret, Select, Checkbox:
		case "":
			bad(*f, i, "type is required: text, secret, select or checkbox")
			continue
		default:
			bad(*f, i, "type must be text, secret, select or checkbox")
			continue
		}
		if f.Pattern != "" {
			if f.Type != Text && f.Type != Secret {
				bad(*f, i, "pattern is only for text and secret fields")
			} else if re, err := regexp.Compile(`^(?:` + f.Pattern + `)$`); err != nil {
				bad(*f, i, "pattern is not a valid regular expression (RE2 syntax)")
			} else {
				f.re = re
				f.digits = digitsOnly(f.Pattern)
				if f.Message == nil && !f.digits.Worded() {
					// Refused rather than warned about: without a message
					// the owner would read only "This value does not have
					// the expected format." and be stuck (issue 14).
					bad(*f, i, `pattern needs a "message" saying what a valid value looks like (a string, or one per language): the page words only digits-only patterns such as [0-9]{3,12} or [0-9]{10}|[0-9]{12} itself`)
				}
			}
		}
		if f.Message != nil {
			if f.Pattern == "" {
				bad(*f, i, "message is only for a field with a pattern: it says what the pattern wants")
			}
			if l, blank := f.Message.blank(); blank {
				bad(*f, i, "message is empty%s", inLang(l))
			}
		}
		if f.Example != nil {
			if f.Type != Text && f.Type != Secret {
				bad(*f, i, "example is only for text and secret fields")
			} else if l, blank := f.Example.blank(); blank {
				bad(*f, i, "example is empty%s", inLang(l))
			} else {
				for _, l := range sortedLangs(f.Example) {
					if f.problem(strings.TrimSpace(f.Example[l])) != "" {
						bad(*f, i, "example%s does not pass the field's own checks", inLang(l))
					}
				}
			}
		}
		if f.Type == Select {
			if len(f.Options) == 0 {
				bad(*f, i, "a select needs options")
			}
			values := map[string]bool{}
			for j, o := range f.Options {
				if o.Value == "" || len(o.Value) > MaxValueLen {
					bad(*f, i, "option #%d needs a value", j+1)
				}
				if values[o.Value] {
					bad(*f, i, "option #%d repeats a value", j+1)
				}
				values[o.Value] = true
				if o.Label.empty() {
					bad(*f, i, "option #%d needs a label", j+1)
				}
			}
		} else if len(f.Options) > 0 {
			bad(*f, i, "options are only for select fields")
		}
		switch {
		case f.Default == "":
		case f.Type == Secret:
			bad(*f, i, "a secret cannot have a default: it would sit in a file in clear text")
		case f.Type == Checkbox && f.Default != On && f.Default != Off:
			bad(*f, i, `a checkbox's default is "true" or "false"`)
		case f.Type == Select && !slices.ContainsFunc(f.Options, func(o Option) bool { return o.Value == f.Default }):
			bad(*f, i, "default is not one of the options")
		case f.Type == Text && f.problem(f.Default) != "":
			bad(*f, i, "default does not pass the field's own checks")
		}
	}
	if len(problems) > 0 {
		return Schema{}, errors.New(strings.Join(problems, "; "))
	}
	return s, nil
}

// inLang names a language in a schema problem ("" is the plain string).
func inLang(l string) string {
	if l == "" {
		return ""
	}
	return fmt.Sprintf(" (%s)", l)
}

func sortedLangs(t Localized) []string {
	langs := make([]string, 0, len(t))
	for l := range t {
		langs = append(langs, l)
	}
	sort.Strings(langs)
	return langs
}

// jsonProblem words a decoding error without the decoder's Go type names.
func jsonProblem(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Type == reflect.TypeFor[Localized]() {
			return fmt.Errorf("%s must be %s", te.Field, te.Value)
		}
		return fmt.Errorf("%s has the wrong type (a JSON %s)", te.Field, te.Value) // a JSON kind, never the value
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("empty or cut short")
	}
	return err // unknown field "x": names a key, never a value
}

// Problem is why a submitted value was refused; handlers word it.
type Problem string

// The problems a value can have.
const (
	Required Problem = "required" // empty, or a required checkbox not ticked
	Mismatch Problem = "pattern"  // does not match the field's pattern
	Choice   Problem = "choice"   // not one of a select's options
	TooLong  Problem = "too_long" // more than MaxValueLen bytes
	Invalid  Problem = "invalid"  // not UTF-8, or has control characters
)

// problem checks a non-empty text or secret value.
func (f Field) problem(v string) Problem {
	switch {
	case len(v) > MaxValueLen:
		return TooLong
	case !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl):
		return Invalid
	case f.re != nil && !f.re.MatchString(v):
		return Mismatch
	}
	return ""
}

// Submission is what the owner sent: the value of each field that was in
// the form (an unticked checkbox is absent), and the secrets to clear.
type Submission struct {
	Values map[string]string
	Clear  map[string]bool
}

// Check validates a submission. saved are the account's current values: a
// secret left empty keeps its saved value. It returns the complete new
// values (every field of the schema, nothing else) when there is no
// problem, else the problem of each refused field.
func (s Schema) Check(sub Submission, saved map[string]string) (map[string]string, map[string]Problem) {
	values := make(map[string]string, len(s.Fields))
	problems := map[string]Problem{}
	for _, f := range s.Fields {
		v, sent := sub.Values[f.Name]
		if f.Type != Checkbox {
			v = strings.TrimSpace(v) // pasted tokens bring stray spaces and newlines
		}
		switch f.Type {
		case Checkbox:
			v = Off
			if sent {
				v = On
			}
			if f.Required && v != On {
				problems[f.Name] = Required
			}
		case Select:
			if v == "" {
				if f.Required {
					problems[f.Name] = Required
				}
			} else if !slices.ContainsFunc(f.Options, func(o Option) bool { return o.Value == v }) {
				problems[f.Name] = Choice
			}
		case Secret:
			old, had := saved[f.Name]
			switch {
			case v != "":
			case sub.Clear[f.Name] && !f.Required:
				v = ""
			case had && old != "":
				v = old // left empty: keep the saved secret
			}
			fallthrough
		default:
			if v == "" {
				if f.Required {
					problems[f.Name] = Required
				}
			} else if p := f.problem(v); p != "" {
				problems[f.Name] = p
			}
		}
		values[f.Name] = v
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return values, nil
}

// Value is what the form shows for a non-secret field: the saved value,
// else the default.
func (f Field) Value(saved map[string]string) string {
	if v, ok := saved[f.Name]; ok {
		return v
	}
	return f.Default
}

// HasSaved reports whether a non-empty value is saved for the field.
func (f Field) HasSaved(saved map[string]string) bool { return saved[f.Name] != "" }
