package handlers

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/modulehub/simpleconnect/i18n"
	"github.com/modulehub/simpleconnect/settings"
)

// Form names of a field's input and of a secret's "remove" box. The prefix
// keeps settings apart from the form's own fields (csrf), whatever the
// module names them; settings names are [a-zA-Z0-9_], so the id needs no
// escaping in a CSS selector or a fragment.
func inputID(name string) string { return "setting-" + name }
func clearID(name string) string { return "clear-" + name }

// fieldView is one connection variable as the form shows it, its words
// already in the page's language.
type fieldView struct {
	ID, Type, Label, Help string
	Example               string // a valid value, "For example: …"
	Required              bool
	ShowRequired          bool // "(required)" after the label: not once a required secret is saved
	Numeric               bool // digits only: a numeric keyboard on phones
	MaxLen                int
	Value                 string // text and select; never a secret
	Checked               bool   // checkbox
	Options               []optionView
	Placeholder           string // select: the "choose" entry; empty: none

	Saved       bool // secret: a value is saved (shown masked)
	ClearID     string
	CanClear    bool // secret: optional and saved
	ClearTicked bool
	Retype      bool // secret: typed, but not kept because the form was refused

	Error       string
	DescribedBy string
	Autofocus   bool
}

type optionView struct {
	Value, Label string
	Selected     bool
}

// fieldError is one line of the error summary above the form.
type fieldError struct {
	ID, Label, Message string
}

// fieldViews builds the form: saved values on a GET; on a refused POST the
// owner's input (sub) and the problems, so nothing typed is lost except
// secrets, which never travel back to the browser.
func (s *server) fieldViews(l i18n.Localizer, saved map[string]string, sub *settings.Submission, problems map[string]settings.Problem) []fieldView {
	views := make([]fieldView, 0, len(s.settings.Fields))
	focused := false
	for _, f := range s.settings.Fields {
		v := fieldView{
			ID: inputID(f.Name), Type: string(f.Type), Label: f.Label.In(l.Lang()), Help: f.Help.In(l.Lang()),
			Example: f.Example.In(l.Lang()), Required: f.Required, Numeric: f.Digits().Only, MaxLen: settings.MaxValueLen,
		}
		value := f.Value(saved)
		if sub != nil {
			value = sub.Values[f.Name]
		}
		switch f.Type {
		case settings.Checkbox:
			v.Checked = value == settings.On
			if sub != nil {
				_, v.Checked = sub.Values[f.Name]
			}
		case settings.Secret:
			v.Saved = f.HasSaved(saved)
			v.CanClear = v.Saved && !f.Required
			v.ClearID = clearID(f.Name)
			v.Retype = sub != nil && strings.TrimSpace(sub.Values[f.Name]) != ""
			v.ClearTicked = sub != nil && sub.Clear[f.Name]
		case settings.Select:
			v.Value = value
			if !f.Required || f.Default == "" {
				v.Placeholder = l.T("settings.choose")
			}
			for _, o := range f.Options {
				v.Options = append(v.Options, optionView{Value: o.Value, Label: o.Label.In(l.Lang()), Selected: o.Value == value})
			}
		default:
			v.Value = value
		}
		v.ShowRequired = f.Required && !v.Saved
		var described []string
		if v.Help != "" {
			described = append(described, v.ID+"-help")
		}
		if v.Example != "" {
			described = append(described, v.ID+"-example")
		}
		if v.Saved {
			described = append(described, v.ID+"-saved")
		}
		if v.Retype {
			described = append(described, v.ID+"-retype")
		}
		if p, bad := problems[f.Name]; bad {
			v.Error = problemText(l, f, p)
			described = append(described, v.ID+"-error")
			v.Autofocus = !focused // the first field to fix gets the focus
			focused = true
		}
		v.DescribedBy = strings.Join(described, " ")
		views = append(views, v)
	}
	return views
}

// problemText words why a value was refused so that it says what is
// expected: the schema's own message, else what the field's type or a
// digits-only pattern wants; then the example, when there is one.
func problemText(l i18n.Localizer, f settings.Field, p settings.Problem) string {
	var text string
	switch {
	case p == settings.Mismatch && f.Message.In(l.Lang()) != "":
		text = f.Message.In(l.Lang())
	case p == settings.Mismatch && f.Digits().Only:
		d := f.Digits()
		switch {
		case d.Min == d.Max:
			text = l.T("settings.problem.digits.exact", d.Min)
		case d.Max > 0 && d.Min > 0:
			text = l.T("settings.problem.digits.range", d.Min, d.Max)
		case d.Max > 0:
			text = l.T("settings.problem.digits.max", d.Max)
		case d.Min > 1:
			text = l.T("settings.problem.digits.min", d.Min)
		default:
			text = l.T("settings.problem.digits")
		}
	case p == settings.Required && (f.Type == settings.Select || f.Type == settings.Checkbox):
		text = l.T("settings.problem.required." + string(f.Type))
	default:
		text = l.T("settings.problem." + string(p))
	}
	if ex := f.Example.In(l.Lang()); ex != "" && (p == settings.Mismatch || p == settings.Required) {
		text += " " + l.T("settings.example", ex)
	}
	return text
}

// handleAccountSettings saves the connection variables: checked here, not
// in the browser, then sealed at rest by the store. A refused form comes
// back with the problems next to their fields and the input kept.
func (s *server) handleAccountSettings(c echo.Context) error {
	sess, acc, form, err := s.sessionForm(c)
	if err != nil {
		return err
	}
	if s.settings.Empty() {
		return errNotFound
	}
	sub := settings.Submission{Values: map[string]string{}, Clear: map[string]bool{}}
	for _, f := range s.settings.Fields {
		if vs := form[inputID(f.Name)]; len(vs) > 0 {
			sub.Values[f.Name] = vs[0]
		}
		if form.Get(clearID(f.Name)) != "" {
			sub.Clear[f.Name] = true
		}
	}
	values, problems := s.settings.Check(sub, acc.Settings)
	if len(problems) > 0 {
		c.Set("outcome", "invalid_settings")
		l := s.localizer(c)
		v := s.accountView(c, sess, acc)
		v.Title = l.T("settings.errors.title_prefix") + " " + v.Title // read first by screen readers
		v.Settings = s.fieldViews(l, acc.Settings, &sub, problems)
		for _, f := range v.Settings {
			if f.Error != "" {
				v.Errors = append(v.Errors, fieldError{ID: f.ID, Label: f.Label, Message: f.Error})
			}
		}
		return c.Render(http.StatusUnprocessableEntity, "account.html", v)
	}
	if _, err := s.accounts.SaveSettings(c.Request().Context(), acc, values); err != nil {
		return err
	}
	c.Set("outcome", Outcome(nil))
	// Post/Redirect/Get: a reload shows the page, it does not post again.
	return c.Redirect(http.StatusSeeOther, "/account?done=saved")
}
