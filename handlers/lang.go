package handlers

import (
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/modulehub/simpleconnect/i18n"
)

// langCookie remembers the language picked with the switcher. It is a
// preference, not a credential: no CSRF token guards setting it.
const langCookie = "lang"

// localizer returns the request's language: ?lang= (the switcher, which
// also sets the cookie), then the cookie, then Accept-Language.
func (s *server) localizer(c echo.Context) i18n.Localizer {
	if l, ok := c.Get("localizer").(i18n.Localizer); ok {
		return l
	}
	var lang string
	if q := c.QueryParam("lang"); s.words.Supported(q) {
		lang = q
		c.SetCookie(&http.Cookie{
			Name: langCookie, Value: q, Path: "/", MaxAge: 365 * 24 * 3600,
			HttpOnly: true, Secure: s.cfg.SecureCookies(), SameSite: http.SameSiteLaxMode,
		})
	} else if ck, err := c.Cookie(langCookie); err == nil && s.words.Supported(ck.Value) {
		lang = ck.Value
	} else {
		lang = s.words.Match(c.Request().Header.Get("Accept-Language"))
	}
	c.Response().Header().Add("Vary", "Accept-Language, Cookie")
	l := s.words.For(lang)
	c.Set("localizer", l)
	return l
}

// page is what every HTML page has: language, switcher, title, icon.
type page struct {
	Lang  string
	L     i18n.Localizer
	Title string
	Icon  string // the module's logo
	Langs []langLink
}

type langLink struct {
	Code, Name, Href string
	Current          bool
}

// newPage builds the common part of a page. The switcher links to the
// page itself when it was a GET, else to the account page: following a
// link never repeats a form post.
func (s *server) newPage(c echo.Context, title string) page {
	l := s.localizer(c)
	target := "/account"
	if c.Request().Method == http.MethodGet && c.Path() == "/account/disconnect" {
		target = c.Path()
	}
	p := page{Lang: l.Lang(), L: l, Title: title, Icon: s.logo()}
	for _, code := range i18n.Langs {
		p.Langs = append(p.Langs, langLink{
			Code: code, Name: s.words.For(code).T("lang.name"),
			Href: target + "?" + url.Values{"lang": {code}}.Encode(), Current: code == l.Lang(),
		})
	}
	return p
}
