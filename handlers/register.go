package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/verify"
	"github.com/modulehub/simpleconnect/webhook"
)

// handleConfig answers the CRM's configUrl (spec §1).
func (s *server) handleConfig(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, s.configBody)
}

// configReply encodes /config's reply once, in New, instead of on every
// call (BENCHMARKS.md): byte for byte what c.JSON wrote, newline included.
func configReply(cfg config.Config) []byte {
	b, _ := json.Marshal(struct { // cannot fail: a bool, strings
		Success     bool     `json:"success"`
		Scopes      []string `json:"scopes"`
		RegisterURL string   `json:"registerUrl"`
	}{true, cfg.ModuleScopes, cfg.PublicURLFor("/register")})
	return append(b, '\n')
}

// formValues reads a urlencoded or multipart form; anything else is a bad
// request.
func formValues(c echo.Context) (url.Values, error) {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if !strings.HasPrefix(ct, echo.MIMEApplicationForm) && !strings.HasPrefix(ct, echo.MIMEMultipartForm) {
		return nil, fmt.Errorf("%w: content type is not a form", errBadRequest)
	}
	form, err := c.FormParams()
	if err != nil {
		var he *echo.HTTPError
		if errors.As(err, &he) && he.Code == http.StatusRequestEntityTooLarge {
			return nil, errTooLarge
		}
		return nil, fmt.Errorf("%w: form: %v", errBadRequest, err)
	}
	return form, nil
}

// handleRegister connects a shop (spec §2): verify, check the address,
// bound the attempts of this (shop, key) pair, record the attempt, register
// the module in the shop's CRM, and only then make the account active.
func (s *server) handleRegister(c echo.Context) error {
	form, err := formValues(c)
	if err != nil {
		return s.registerFailed(c, err)
	}
	req, err := webhook.ParseRegister(form)
	if err != nil {
		return s.registerFailed(c, err)
	}
	c.Set("shop_url", req.SystemURL) // the language of any errorMsg: the shop's (errors.go)
	if _, err := verify.Token(s.cfg.ModuleSecrets, req.APIKey, req.Token); err != nil {
		return s.registerFailed(c, err)
	}
	systemURL, err := s.addresses.Canonical(req.SystemURL)
	if err != nil {
		return s.registerFailed(c, err)
	}
	v := s.allowAttempt(c, systemURL, req.APIKey)
	if !v.OK {
		return s.registerFromStoredState(c, systemURL, req.APIKey, v.InFlight) // a replay costs the shop's CRM nothing
	}
	acc, err := s.connector.Connect(c.Request().Context(), systemURL, req.APIKey)
	if acc.ID != "" {
		c.Set("account_id", acc.ID)
	}
	if err != nil {
		s.attemptEnded(c, v, systemURL, req.APIKey, true)
		return s.registerFailed(c, err)
	}
	s.attemptEnded(c, v, systemURL, req.APIKey, false)
	s.recordOutcome(c, nil)
	return c.JSON(http.StatusOK, webhookReply{Success: true, AccountURL: s.cfg.PublicURLFor("/account")})
}

func (s *server) registerFailed(c echo.Context, err error) error {
	s.recordOutcome(c, err)
	return err
}

// recordOutcome names a register's result once, for the request log line
// and the registers counter.
func (s *server) recordOutcome(c echo.Context, err error) {
	outcome := Outcome(err)
	c.Set("outcome", outcome)
	s.metrics.Register(outcome)
}
