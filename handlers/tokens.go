package handlers

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/modulehub/simpleconnect/handlers/serviceapi"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/tokens"
)

var (
	errTokensOff = errNotFound // no TOKEN_SIGNING_KEY: the token routes do not exist
)

// handleJWKS publishes the public keys of TOKEN_SIGNING_KEY, for the
// module's apps to verify tokens.
func (s *server) handleJWKS(c echo.Context) error {
	if s.tokens == nil {
		return errTokensOff
	}
	c.Response().Header().Set("Cache-Control", "public, max-age=300")
	return c.Blob(http.StatusOK, "application/jwk-set+json", s.tokens.JWKS())
}

// issueFor signs a token for an account the module runs for, by the
// service API's rule (the proxy and its token route use it too). The page
// answers not_active, its one text for every such state: the page itself
// shows which.
func (s *server) issueFor(acc store.Account) (tokens.Token, error) {
	if err := serviceapi.Running(acc); err != nil {
		return tokens.Token{}, fmt.Errorf("%w: %w", errNotActive, err)
	}
	return s.tokens.Issue(acc.ID, acc.SystemURL)
}

// handleAccountToken answers the signed-in page's own scripts with a token
// for its shop: session cookie plus the CSRF token (form field csrf, or the
// X-CSRF-Token header).
func (s *server) handleAccountToken(c echo.Context) error {
	if s.tokens == nil {
		return errTokensOff
	}
	noStore(c)
	sess, acc, err := s.session(c)
	if err != nil {
		return err
	}
	csrf := c.Request().Header.Get("X-CSRF-Token")
	if csrf == "" && strings.HasPrefix(c.Request().Header.Get(echo.HeaderContentType), echo.MIMEApplicationForm) {
		form, err := formValues(c)
		if err != nil {
			return err
		}
		csrf = form.Get("csrf")
	}
	if !sess.ValidCSRF(csrf) {
		return errBadCSRF
	}
	tok, err := s.issueFor(acc)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, tok)
}

// handleAccountOpen sends the owner to the module's app with a token in the
// URL's fragment: browsers never send a fragment to a server, so it reaches
// neither logs nor Referer headers.
func (s *server) handleAccountOpen(c echo.Context) error {
	if s.tokens == nil || s.cfg.ModuleAppURL == "" {
		return errNotFound
	}
	_, acc, _, err := s.sessionForm(c)
	if err != nil {
		return err
	}
	tok, err := s.issueFor(acc)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Referrer-Policy", "no-referrer")
	return c.Redirect(http.StatusSeeOther, s.cfg.ModuleAppURL+"#token="+url.QueryEscape(tok.Token))
}
