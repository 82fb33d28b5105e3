package handlers

import (
	"errors"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modulehub/simpleconnect/i18n"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/settings"
	"github.com/modulehub/simpleconnect/store"
)

// draftTTL is how long a settings form that was sent but not saved is kept
// for its session (never longer than the session): long enough to look a
// value up and come back, short enough that a newly typed secret does not
// linger. The page says so next to a kept secret.
const draftTTL = 15 * time.Minute

// Why a draft was not saved (store.Draft.Reason).
const (
	draftInvalid = "invalid" // a value was refused
	draftExpired = "expired" // the form's CSRF token was stale
)

// problemKeptExpired: the form said a newly typed secret was kept, but the
// draft holding it has expired. Saving now would keep the old value
// silently, so the save is refused and the owner asked to type it again.
const problemKeptExpired settings.Problem = "kept_expired"

// Form names of a field's input, of a secret's "remove" box and of the
// hidden mark of a kept secret. The prefix keeps settings apart from the
// form's own fields (csrf), whatever the module names them; settings names
// are [a-zA-Z0-9_], so the id needs no escaping in a CSS selector or a
// fragment.
func inputID(name string) string { return "setting-" + name }
func clearID(name string) string { return "clear-" + name }
func keptID(name string) string  { return "kept-" + name }

// Draft flags beside the values: a ticked "remove" box, a secret typed but
// not kept.
func clearFlag(name string) string { return "clear:" + name }
func typedFlag(name string) string { return "typed:" + name }

// problemFlag keeps a secret field's problem in the draft: what was typed
// into it is not kept (or nothing was typed: a kept value had expired), so
// checking the draft again could not find the problem.
func problemFlag(name string, p settings.Problem) string { return "problem:" + name + "=" + string(p) }

// secretState is what became of a secret the owner typed into a form that
// was not saved. The page states it plainly next to the field.
type secretState string

const (
	secretUntyped secretState = ""        // nothing typed
	secretKept    secretState = "kept"    // kept for the session; saving with the field empty uses it
	secretDropped secretState = "dropped" // not kept: it must be typed again
)

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
	Secret      secretState // secret: what became of a newly typed value
	KeptID      string
	KeptMinutes int

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

// formState is a settings form that was sent but not saved: what the owner
// typed (secrets only as states), the problems, and why.
type formState struct {
	reason   string
	sub      settings.Submission // secrets' values left out
	secrets  map[string]secretState
	problems map[string]settings.Problem
}

// fieldViews builds the form: saved values when st is nil; else the
// owner's input and the problems, so nothing typed is lost. Secrets never
// travel back to the browser: the field says whether a new one was kept.
func (s *server) fieldViews(l i18n.Localizer, saved map[string]string, st *formState) []fieldView {
	views := make([]fieldView, 0, len(s.settings.Fields))
	focused := false
	for _, f := range s.settings.Fields {
		v := fieldView{
			ID: inputID(f.Name), Type: string(f.Type), Label: f.Label.In(l.Lang()), Help: f.Help.In(l.Lang()),
			Example: f.Example.In(l.Lang()), Required: f.Required, Numeric: f.Digits().Only, MaxLen: settings.MaxValueLen,
		}
		value := f.Value(saved)
		if st != nil {
			value = st.sub.Values[f.Name]
		}
		switch f.Type {
		case settings.Checkbox:
			v.Checked = value == settings.On
			if st != nil {
				_, v.Checked = st.sub.Values[f.Name]
			}
		case settings.Secret:
			v.Saved = f.HasSaved(saved)
			v.CanClear = v.Saved && !f.Required
			v.ClearID, v.KeptID, v.KeptMinutes = clearID(f.Name), keptID(f.Name), int(draftTTL/time.Minute)
			if st != nil {
				v.Secret = st.secrets[f.Name]
				v.ClearTicked = st.sub.Clear[f.Name]
			}
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
		v.ShowRequired = f.Required && !v.Saved && v.Secret != secretKept
		var described []string
		if v.Help != "" {
			described = append(described, v.ID+"-help")
		}
		if v.Example != "" {
			described = append(described, v.ID+"-example")
		}
		switch {
		case v.Secret == secretKept:
			described = append(described, v.ID+"-kept")
		case v.Saved:
			described = append(described, v.ID+"-saved")
		}
		if v.Secret == secretDropped {
			described = append(described, v.ID+"-dropped")
		}
		if st != nil {
			if p, bad := st.problems[f.Name]; bad {
				v.Error = problemText(l, f, p)
				described = append(described, v.ID+"-error")
				v.Autofocus = !focused // the first field to fix gets the focus
				focused = true
			}
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
	case p == settings.Mismatch && f.Digits().Worded():
		d := f.Digits()
		switch {
		case d.Lengths != nil:
			text = l.T("settings.problem.digits.lengths", orList(l, d.Lengths))
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

// orList words counts as "10 or 12", "8, 9 or 11". Spanish writes "u"
// for "o" before a word that starts with an o sound: "9 u 11", "7 u 8"
// (the catalog's settings.problem.digits.or_o; the same word elsewhere).
func orList(l i18n.Localizer, ns []int) string {
	words := make([]string, len(ns))
	for i, n := range ns {
		words[i] = strconv.Itoa(n)
	}
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	last := ns[len(ns)-1]
	or := l.T("settings.problem.digits.or")
	if last == 11 || words[len(words)-1][0] == '8' { // once, ocho, ochenta, ochocientos (counts stay under 2049)
		or = l.T("settings.problem.digits.or_o")
	}
	return strings.Join(words[:len(words)-1], ", ") + " " + or + " " + words[len(words)-1]
}

// readSubmission reads the settings form: each field's value as sent, the
// ticked "remove" boxes, and which secrets the form says are kept.
func (s *server) readSubmission(form url.Values) (sub settings.Submission, kept map[string]bool) {
	sub = settings.Submission{Values: map[string]string{}, Clear: map[string]bool{}}
	kept = map[string]bool{}
	for _, f := range s.settings.Fields {
		if vs := form[inputID(f.Name)]; len(vs) > 0 {
			sub.Values[f.Name] = vs[0]
		}
		if vs := form[clearID(f.Name)]; len(vs) > 0 && vs[0] != "" {
			sub.Clear[f.Name] = true
		}
		if vs := form[keptID(f.Name)]; f.Type == settings.Secret && len(vs) > 0 && vs[0] != "" {
			kept[f.Name] = true
		}
	}
	return sub, kept
}

// typedSecret is the secret the owner typed into the field, "" if none.
func typedSecret(sub settings.Submission, f settings.Field) string {
	if f.Type != settings.Secret {
		return ""
	}
	return strings.TrimSpace(sub.Values[f.Name])
}

// handleAccountSettings saves the connection variables: checked here, not
// in the browser, then sealed at rest by the store. A refused form is kept
// for the session (a draft: the input, and a newly typed secret that was
// fine, sealed) and the browser goes back to the account page, which shows
// it with the problems next to their fields, so the retry needs no
// retyping and a reload does not post again; the page says what was kept.
func (s *server) handleAccountSettings(c echo.Context) error {
	sess, acc, form, err := s.sessionForm(c)
	if errors.Is(err, errBadCSRF) {
		return s.recoverStaleSettings(c, sess, acc, form)
	}
	if err != nil {
		return err
	}
	if s.settings.Empty() {
		return errNotFound
	}
	ctx := c.Request().Context()
	sub, kept := s.readSubmission(form)
	var draft store.Draft
	if len(kept) > 0 {
		if draft, err = s.sessions.GetDraft(ctx, sess.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	lost := map[string]bool{} // kept by an earlier form, but expired since
	for name := range kept {
		f, _ := s.settings.Field(name)
		if typedSecret(sub, f) != "" || sub.Clear[name] {
			continue // a new value, or "remove", replaces the kept one
		}
		if v, ok := draft.Secrets[name]; ok {
			sub.Values[name] = v.Reveal()
		} else {
			lost[name] = true
		}
	}
	values, problems := s.settings.Check(sub, acc.Settings)
	for name := range lost {
		if problems == nil {
			problems = map[string]settings.Problem{}
		}
		problems[name] = problemKeptExpired
	}
	if len(problems) > 0 {
		c.Set("outcome", "invalid_settings")
		st, kept := s.keepDraft(c, sess, formState{reason: draftInvalid, sub: sub, problems: problems})
		if kept {
			// Post/Redirect/Get, as for a save: the account page shows the
			// draft with its problems, and a reload shows it again instead
			// of posting the form a second time.
			// The page's language is its cookie's or the browser's, as for
			// the form's own reply before; a ?lang= on the post (none on
			// our form, but any page takes one) is carried over.
			to := "/account"
			if q := c.QueryParam("lang"); s.words.Supported(q) {
				to += "?lang=" + q
			}
			return c.Redirect(http.StatusSeeOther, to)
		}
		// No draft (its store failed): the form comes back in this reply,
		// or what was typed would be lost.
		return s.renderSettingsForm(c, http.StatusUnprocessableEntity, sess, acc, st)
	}
	if _, err := s.accounts.SaveSettings(ctx, acc, values); err != nil {
		return err
	}
	// Saved: the draft is spent. Should this fail, the page would show the
	// draft as not saved: wrong, but never the other way round.
	if err := s.sessions.DeleteDraft(ctx, sess.ID); err != nil {
		return err
	}
	c.Set("outcome", Outcome(nil))
	// Post/Redirect/Get: a reload shows the page, it does not post again.
	return c.Redirect(http.StatusSeeOther, "/account?done=saved")
}

// recoverStaleSettings answers a settings form whose CSRF token is stale
// while its session is live. The usual cause: the module was opened again
// from the CRM in another tab, which started a new session (and token) in
// the same browser. A reload would post the same stale token again, so
// instead nothing is saved, what was typed (never a secret) becomes the
// session's draft, and the browser goes to the account page, which shows
// it with a note to check and save. Only a form posted by one of our own
// pages for this same account is kept: a cross-site post never fills the
// owner's form, a page of another shop's account never fills this one's.
// Anything else gets the expired-form page, with a link back.
func (s *server) recoverStaleSettings(c echo.Context, sess store.Session, acc store.Account, form url.Values) error {
	if s.settings.Empty() || !s.sameOrigin(c) || form.Get("account") != acc.ID {
		return errBadCSRF
	}
	sub, _ := s.readSubmission(form)
	if _, kept := s.keepDraft(c, sess, formState{reason: draftExpired, sub: sub}); !kept {
		return errBadCSRF
	}
	c.Set("outcome", "stale_form_kept")
	return c.Redirect(http.StatusSeeOther, "/account#settings")
}

// keepDraft keeps a form that was not saved for the session, and decides
// what became of each secret typed into it: kept when the form was
// refused for other fields only, else dropped. The secrets' values leave
// st.sub: from here on they exist only in the sealed draft. kept is false
// when the draft could not be stored.
func (s *server) keepDraft(c echo.Context, sess store.Session, st formState) (_ formState, kept bool) {
	st.secrets = map[string]secretState{}
	d := store.Draft{Reason: st.reason, Values: map[string]string{}, Flags: map[string]bool{}, Secrets: map[string]redact.Secret{}}
	values := maps.Clone(st.sub.Values)
	for _, f := range s.settings.Fields {
		if st.sub.Clear[f.Name] {
			d.Flags[clearFlag(f.Name)] = true
		}
		if f.Type != settings.Secret {
			if v, ok := values[f.Name]; ok {
				d.Values[f.Name] = v
			}
			continue
		}
		delete(values, f.Name)
		typed := typedSecret(st.sub, f)
		if p := st.problems[f.Name]; p != "" {
			d.Flags[problemFlag(f.Name, p)] = true
		}
		switch {
		case typed == "":
		case st.reason == draftInvalid && st.problems[f.Name] == "":
			st.secrets[f.Name] = secretKept
			d.Secrets[f.Name] = redact.Secret(typed)
		default: // refused itself, or typed into an expired form: never kept
			st.secrets[f.Name] = secretDropped
			d.Flags[typedFlag(f.Name)] = true
		}
	}
	st.sub.Values = values
	if err := s.sessions.SaveDraft(c.Request().Context(), sess.ID, d, draftTTL); err != nil {
		// The page still shows what was typed, from this request; it says
		// plainly that no secret was kept.
		s.log.WarnContext(c.Request().Context(), "settings draft not kept", "request_id", requestIDOf(c), "err", err)
		for name, state := range st.secrets {
			if state == secretKept {
				st.secrets[name] = secretDropped
			}
		}
		return st, false
	}
	return st, true
}

// draftState turns a kept draft back into a form: a reload, a language
// switch or the page after an expired form shows what was typed. The
// problems of a refused form are checked again against what is saved now.
func (s *server) draftState(d store.Draft, saved map[string]string) formState {
	st := formState{
		reason:  d.Reason,
		sub:     settings.Submission{Values: maps.Clone(d.Values), Clear: map[string]bool{}},
		secrets: map[string]secretState{},
	}
	if st.sub.Values == nil {
		st.sub.Values = map[string]string{}
	}
	withSecrets := settings.Submission{Values: maps.Clone(st.sub.Values), Clear: st.sub.Clear}
	for _, f := range s.settings.Fields {
		if d.Flags[clearFlag(f.Name)] {
			st.sub.Clear[f.Name] = true
		}
		if v, ok := d.Secrets[f.Name]; ok && f.Type == settings.Secret {
			st.secrets[f.Name] = secretKept
			withSecrets.Values[f.Name] = v.Reveal()
		} else if d.Flags[typedFlag(f.Name)] {
			st.secrets[f.Name] = secretDropped
		}
	}
	if st.reason == draftInvalid {
		_, st.problems = s.settings.Check(withSecrets, saved)
		for _, f := range s.settings.Fields {
			if f.Type != settings.Secret {
				continue
			}
			for flag := range d.Flags {
				if p, ok := strings.CutPrefix(flag, problemFlag(f.Name, "")); ok {
					if st.problems == nil {
						st.problems = map[string]settings.Problem{}
					}
					st.problems[f.Name] = settings.Problem(p)
				}
			}
		}
	}
	return st
}

// renderSettingsForm shows the account page with a form that was not
// saved: the summary says why and lists every field to fix, and every
// secret that must be typed again.
func (s *server) renderSettingsForm(c echo.Context, status int, sess store.Session, acc store.Account, st formState) error {
	l := s.localizer(c)
	v := s.accountView(c, sess, acc)
	if v.Notice != nil && v.Notice.Kind == "saved" {
		v.Notice = nil // never "Settings saved." next to a form that was not
	}
	v.Draft = true
	v.Settings = s.fieldViews(l, acc.Settings, &st)
	for _, f := range v.Settings {
		switch {
		case f.Error != "":
			v.Errors = append(v.Errors, fieldError{ID: f.ID, Label: f.Label, Message: f.Error})
		case f.Secret == secretDropped:
			v.Errors = append(v.Errors, fieldError{ID: f.ID, Label: f.Label, Message: l.T("settings.secret.not_kept")})
		}
	}
	prefix := "settings.draft.title_prefix"
	switch {
	case st.reason == draftExpired:
		v.FormNote = l.T("settings.draft.expired")
	case len(st.problems) > 0:
		v.FormNote, prefix = l.T("settings.errors.title"), "settings.errors.title_prefix"
	default:
		v.FormNote = l.T("settings.draft.unsaved")
	}
	v.Title = l.T(prefix) + " " + v.Title // read first by screen readers
	return s.renderAccount(c, status, v)
}

// handleDiscardSettings drops a form that was not saved: the page shows
// the saved values again.
func (s *server) handleDiscardSettings(c echo.Context) error {
	sess, _, _, err := s.sessionForm(c)
	if err != nil {
		return err
	}
	if err := s.sessions.DeleteDraft(c.Request().Context(), sess.ID); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/account#settings")
}
