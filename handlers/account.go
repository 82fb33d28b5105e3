package handlers

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/store"
)

// cookieName is the session cookie's name. Over https it takes the
// __Host- prefix: the browser then insists on Secure, Path=/ and no Domain.
func (s *server) cookieName() string {
	if s.cfg.SecureCookies() {
		return "__Host-session"
	}
	return "session"
}

func (s *server) setSessionCookie(c echo.Context, value string, maxAge time.Duration) {
	c.SetCookie(&http.Cookie{
		Name: s.cookieName(), Value: value, Path: "/",
		MaxAge: int(maxAge.Seconds()), HttpOnly: true, Secure: s.cfg.SecureCookies(),
		SameSite: http.SameSiteLaxMode, // the CRM's POST is cross-site; the 303 GET that follows is a top-level navigation, which Lax allows
	})
}

func (s *server) clearSessionCookie(c echo.Context) {
	c.SetCookie(&http.Cookie{
		Name: s.cookieName(), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.cfg.SecureCookies(), SameSite: http.SameSiteLaxMode,
	})
}

func (s *server) sessionID(c echo.Context) redact.Secret {
	ck, err := c.Cookie(s.cookieName())
	if err != nil {
		return ""
	}
	return redact.Secret(ck.Value)
}

// handleAccountLogin is accountUrl (spec §4): the CRM sends the owner's
// browser here with the clientId. A known clientId starts a new session
// (any old one ends: rotation on sign-in) and redirects to the page.
func (s *server) handleAccountLogin(c echo.Context) error {
	noStore(c)
	form, err := formValues(c)
	if err != nil {
		return err
	}
	clientID := redact.Secret(strings.TrimSpace(form.Get("clientId")))
	if clientID.IsZero() || len(clientID.Reveal()) > 256 {
		return errUnknownClient
	}
	ctx := c.Request().Context()
	acc, err := s.accounts.FindByClientID(ctx, clientID)
	if err != nil {
		return notFoundAs(err, errUnknownClient)
	}
	if old := s.sessionID(c); !old.IsZero() {
		if err := s.sessions.DeleteSession(ctx, old); err != nil {
			return err
		}
	}
	sess, err := s.sessions.CreateSession(ctx, acc.ID, s.cfg.SessionTTL)
	if err != nil {
		return err
	}
	c.Set("account_id", acc.ID)
	s.setSessionCookie(c, sess.ID.Reveal(), s.cfg.SessionTTL)
	return c.Redirect(http.StatusSeeOther, "/account")
}

// session returns the signed-in session and its account.
func (s *server) session(c echo.Context) (store.Session, store.Account, error) {
	ctx := c.Request().Context()
	sess, err := s.sessions.GetSession(ctx, s.sessionID(c))
	if errors.Is(err, store.ErrNotFound) {
		return store.Session{}, store.Account{}, errNoSession
	}
	if err != nil {
		return store.Session{}, store.Account{}, err
	}
	acc, err := s.accounts.Get(ctx, sess.AccountID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Session{}, store.Account{}, errNoSession
	}
	c.Set("account_id", acc.ID)
	return sess, acc, err
}

// sessionForm reads a state-changing form from a signed-in browser: the
// session and its account, the form, and its CSRF token checked against the
// session's. Every POST of the account page starts here. A stale token
// (errBadCSRF) comes with the live session, account and form, for a
// handler that can recover (recoverStaleSettings); others just return it.
func (s *server) sessionForm(c echo.Context) (store.Session, store.Account, url.Values, error) {
	noStore(c)
	sess, acc, err := s.session(c)
	if err != nil {
		return store.Session{}, store.Account{}, nil, err
	}
	form, err := formValues(c)
	if err != nil {
		return store.Session{}, store.Account{}, nil, err
	}
	if !sess.ValidCSRF(form.Get("csrf")) {
		return sess, acc, form, errBadCSRF
	}
	return sess, acc, form, nil
}

// sameOrigin reports whether the browser says the request came from one of
// our own pages: Sec-Fetch-Site, which every current browser sends, else
// an Origin naming the host the request was sent to or PUBLIC_URL's host.
// A page cannot forge either. Neither present: no.
func (s *server) sameOrigin(c echo.Context) bool {
	r := c.Request()
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin"
	}
	origin, err := url.Parse(r.Header.Get("Origin"))
	if err != nil || origin.Host == "" {
		return false
	}
	if origin.Host == r.Host {
		return true
	}
	public, err := url.Parse(s.cfg.PublicURL)
	return err == nil && origin.Host == public.Host
}

// handleAccountPage shows the module's personal account page.
func (s *server) handleAccountPage(c echo.Context) error {
	noStore(c)
	sess, acc, err := s.session(c)
	if err != nil {
		return err
	}
	if !s.settings.Empty() { // a form sent but not saved comes back as it was
		d, err := s.sessions.GetDraft(c.Request().Context(), sess.ID)
		switch {
		case err == nil:
			return s.renderSettingsForm(c, http.StatusOK, sess, acc, s.draftState(d, acc.Settings))
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
	}
	return s.renderAccount(c, http.StatusOK, s.accountView(c, sess, acc))
}

// handleAccountLogout ends the session.
func (s *server) handleAccountLogout(c echo.Context) error {
	sess, _, _, err := s.sessionForm(c)
	if err != nil {
		return err
	}
	if err := s.sessions.DeleteSession(c.Request().Context(), sess.ID); err != nil {
		return err
	}
	s.clearSessionCookie(c)
	l := s.localizer(c)
	return s.renderMessage(c, http.StatusOK, l.T("signedout.title"), l.T("signedout.text"), false, nil)
}
