package handlers

import (
	"embed"
	"html/template"
	"io"
	"io/fs"
	"net/http"
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

// messageView is a page with one message: a failure, or signed out.
type messageView struct {
	page
	Heading string
	Message string
	Alert   bool // a failure: role="alert" instead of "status"
}

func (s *server) renderMessage(c echo.Context, status int, heading, msg string, alert bool) error {
	return c.Render(status, "message.html", messageView{
		page: s.newPage(c, heading), Heading: heading, Message: msg, Alert: alert,
	})
}

// expiredView says how to come back when the session has ended.
type expiredView struct {
	page
	Module string
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
}

func (s *server) accountView(c echo.Context, sess store.Session, acc store.Account) accountView {
	l := s.localizer(c)
	v := accountView{
		page:   s.newPage(c, s.cfg.ModuleName+" — "+l.T("account.title")),
		Module: s.cfg.ModuleName, Logo: s.logo(), SystemURL: acc.SystemURL, Status: string(acc.Status()),
		ConnectedAt: s.date(c, acc.ConnectedAt), ActivityAt: s.date(c, acc.ActivityAt),
		CSRF:          sess.CSRF.Reveal(),
		CanDisconnect: acc.Connected && acc.Active,
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

// logo is the module's logo on its own page: the configured URL, else our
// own file by path (PUBLIC_URL may name another host than the browser used).
func (s *server) logo() string {
	if s.cfg.ModuleLogoURL != "" {
		return s.cfg.ModuleLogoURL
	}
	return "/static/logo.svg"
}
