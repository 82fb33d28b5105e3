package handlers

import (
	"embed"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

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

// pages renders the HTML templates (echo.Renderer).
type pages struct {
	t *template.Template
}

func mustParsePages() *pages {
	t := template.Must(template.New("").Funcs(template.FuncMap{
		"date": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.UTC().Format("2 Jan 2006, 15:04 UTC")
		},
	}).ParseFS(templateFS, "templates/*.html"))
	return &pages{t: t}
}

func (p *pages) Render(w io.Writer, name string, data any, _ echo.Context) error {
	return p.t.ExecuteTemplate(w, name, data)
}

type messageView struct {
	Module  string
	Message string
}

func (p *pages) renderMessage(c echo.Context, status int, msg string) error {
	return c.Render(status, "message.html", messageView{Message: msg})
}

// accountView is what the account page shows; never a credential.
type accountView struct {
	Module      string
	Logo        string
	SystemURL   string
	Status      string
	ConnectedAt time.Time
	ActivityAt  time.Time
	CreatedAt   time.Time
	CSRF        string
}

func (s *server) accountView(sess store.Session, acc store.Account) accountView {
	return accountView{
		Module: s.cfg.ModuleName, Logo: s.cfg.LogoURL(), SystemURL: acc.SystemURL, Status: string(acc.Status()),
		ConnectedAt: acc.ConnectedAt, ActivityAt: acc.ActivityAt, CreatedAt: acc.CreatedAt,
		CSRF: sess.CSRF.Reveal(),
	}
}
