package handlers

import (
	"embed"
	"errors"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modulehub/simpleconnect/i18n"
	"github.com/modulehub/simpleconnect/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

func staticFiles() http.Handler {
	sub, _ := fs.Sub(staticFS, "static")
	return http.FileServer(http.FS(sub))
}

// handleFavicon answers the /favicon.ico every browser asks for: the
// module's logo (pages also name it with <link rel="icon">).
func (s *server) handleFavicon(c echo.Context) error {
	if s.cfg.ModuleLogoURL != "" {
		return c.Redirect(http.StatusFound, s.cfg.ModuleLogoURL)
	}
	logo, err := staticFS.ReadFile("static/logo.svg")
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "public, max-age=86400")
	return c.Blob(http.StatusOK, "image/svg+xml", logo)
}

// pages renders the HTML templates (echo.Renderer). Every word on them
// comes from the i18n catalogs through the page's Localizer (.L.T "key").
type pages struct {
	t *template.Template
}

func mustParsePages() *pages {
	return &pages{t: template.Must(template.New("").Funcs(template.FuncMap{
		"fieldArgs": func(f fieldView, l i18n.Localizer) fieldArgs { return fieldArgs{F: f, L: l} },
	}).ParseFS(templateFS, "templates/*.html"))}
}

// fieldArgs hands the "field" template its field and the page's words.
type fieldArgs struct {
	F fieldView
	L i18n.Localizer
}

func (p *pages) Render(w io.Writer, name string, data any, _ echo.Context) error {
	return p.t.ExecuteTemplate(w, name, data)
}

// messageView is a page about one thing: a failure, or signed out. It is
// titled with the problem and the module's name, and offers one next step.
type messageView struct {
	page
	Module, Logo string
	Heading      string
	Message      string
	Alert        bool      // a failure: role="alert" instead of "status"
	Next         *nextStep // what to do now; nil: the message says it
}

// nextStep is the one thing to do after a failure: a link back to the
// account page, or (without a session to go back to) a step in words.
type nextStep struct {
	Href string // empty: a step in words, e.g. open the module from the CRM
	Text string
}

func (s *server) renderMessage(c echo.Context, status int, heading, msg string, alert bool, next *nextStep) error {
	return c.Render(status, "message.html", messageView{
		page:   s.newPage(c, s.titled(heading)),
		Module: s.cfg.ModuleName, Logo: s.logo(), Heading: heading, Message: msg, Alert: alert, Next: next,
	})
}

// titled is a page's <title>: what the page is about first (a tab, a
// screen reader), then the module's name.
func (s *server) titled(what string) string { return what + " — " + s.cfg.ModuleName }

// renderErrorPage answers a browser in its language: the session-ended
// page, or a page titled with the problem (page.<code>.title, else a
// generic one), its explanation (page.<code>.text, else error.<code>, else
// the reply's own words in the page's language) and the one next step.
func (s *server) renderErrorPage(c echo.Context, r reply, err error) error {
	l := s.localizer(c)
	if errors.Is(err, errNoSession) {
		return c.Render(r.status, "expired.html", expiredView{
			page: s.newPage(c, s.titled(l.T("expired.title"))), Module: s.cfg.ModuleName, Logo: s.logo(),
		})
	}
	heading := l.T("page.error.title")
	if key := "page." + r.code + ".title"; l.Has(key) {
		heading = l.T(key)
	}
	msg := r.message(l, err)
	if key := "page." + r.code + ".text"; l.Has(key) {
		msg = l.T(key)
	} else if key := "error." + r.code; l.Has(key) {
		msg = l.T(key)
	}
	next := &nextStep{Href: "/account", Text: l.T("page.next.account")}
	switch {
	case r.code == "unknown_client" || r.code == "unreadable" || r.code == "move_refused":
		// Nothing here can fix these: the module must be connected again.
		next = &nextStep{Text: l.T("page.next.marketplace")}
	case c.Request().Method == http.MethodPost && c.Request().URL.Path == "/account":
		// The CRM's sign-in post failed: there is no page to go back to yet.
		next = &nextStep{Text: l.T("page.next.crm")}
	}
	return s.renderMessage(c, r.status, heading, msg, true, next)
}

// expiredView says how to come back when the session has ended.
type expiredView struct {
	page
	Module, Logo string
}

// dateView is a moment as the page shows it.
type dateView struct {
	ISO  string // for <time datetime>; empty: never
	Text string
}

func (s *server) date(c echo.Context, t time.Time) dateView {
	if t.IsZero() {
		return dateView{Text: s.localizer(c).T("date.never")}
	}
	t = t.UTC()
	return dateView{ISO: t.Format(time.RFC3339), Text: t.Format("2006-01-02 15:04 UTC")} // the same in every language
}

// notice is a confirmation shown at the top of the account page.
type notice struct {
	Kind string // saved | disconnected: the CSS class and the test hook
	Text string
}

// accountView is what the account page shows; never a credential other
// than the session's own CSRF token, never a saved secret.
type accountView struct {
	page
	Module      string
	Logo        string
	AccountID   string // in the settings form: a stale form is kept only for its own account
	SystemURL   string
	Status      string
	ConnectedAt dateView
	ActivityAt  dateView
	CSRF        string

	Notice *notice
	Alert  string // a failure of the last action, e.g. the CRM refused

	Settings []fieldView
	Draft    bool         // the form was sent but not saved: it can be discarded
	FormNote string       // why the form was not saved: the summary's heading
	Errors   []fieldError // the summary's lines, in form order

	CanDisconnect bool
	// MissingScopes names the permissions the key lost (status scopes_missing).
	MissingScopes string
	// CanOpen offers "Open <module>": MODULE_APP_URL is set and the module
	// runs for this shop.
	CanOpen bool
}

func (s *server) accountView(c echo.Context, sess store.Session, acc store.Account) accountView {
	l := s.localizer(c)
	v := accountView{
		page:   s.newPage(c, s.cfg.ModuleName+" — "+l.T("account.title")),
		Module: s.cfg.ModuleName, Logo: s.logo(), AccountID: acc.ID, SystemURL: acc.SystemURL, Status: string(acc.Status()),
		ConnectedAt: s.date(c, acc.ConnectedAt), ActivityAt: s.date(c, acc.ActivityAt),
		CSRF:          sess.CSRF.Reveal(),
		CanDisconnect: acc.Connected && acc.Active && acc.KeyHealth != store.KeyRevoked,
	}
	v.CanOpen = s.cfg.ModuleAppURL != "" && s.tokens != nil && acc.Connected && acc.Active && !acc.Frozen && acc.KeyHealth == store.KeyHealthy
	if acc.KeyHealth == store.KeyScopesMissing {
		v.MissingScopes = strings.Join(acc.MissingScopes, ", ")
	}
	switch c.QueryParam("done") {
	case "saved":
		v.Notice = &notice{Kind: "saved", Text: l.T("settings.saved")}
	case "disconnected":
		if !acc.Active { // a forged ?done= cannot claim what the state contradicts
			v.Notice = &notice{Kind: "disconnected", Text: l.T("disconnect.done")}
		}
	}
	v.Settings = s.fieldViews(l, acc.Settings, nil)
	return v
}

// renderAccount renders the account page. One that offers "Open <module>"
// lets its form go to the app's origin: the button posts to /account/open,
// whose 303 leads to MODULE_APP_URL, and a browser checks that redirect
// against the page's form-action. Every other page keeps form-action 'self'.
func (s *server) renderAccount(c echo.Context, status int, v accountView) error {
	if v.CanOpen && s.openCSP != nil {
		c.Response().Header()["Content-Security-Policy"] = s.openCSP
	}
	return c.Render(status, "account.html", v)
}

// logo is the module's logo on its own page: the configured URL, else our
// own file by path (PUBLIC_URL may name another host than the browser used).
func (s *server) logo() string {
	if s.cfg.ModuleLogoURL != "" {
		return s.cfg.ModuleLogoURL
	}
	return "/static/logo.svg"
}
