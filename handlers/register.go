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
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/verify"
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

// RegisterRequest is the CRM's register call (spec §2).
type RegisterRequest struct {
	APIKey    redact.Secret
	SystemURL string
	Token     redact.Secret
}

// Limits on register fields: far above what the CRM sends, far below what
// could hurt.
const (
	maxAPIKeyLen    = 256
	maxSystemURLLen = 2048
	maxTokenLen     = 128
)

// ParseRegister reads a register form: one field "register" holding a JSON
// object, or the bracket form register[apiKey]=…&register[systemUrl]=…&register[token]=….
func ParseRegister(form url.Values) (RegisterRequest, error) {
	var in struct {
		APIKey    string `json:"apiKey"`
		SystemURL string `json:"systemUrl"`
		Token     string `json:"token"`
	}
	if raw, ok := form["register"]; ok {
		if len(raw) != 1 {
			return RegisterRequest{}, fmt.Errorf("%w: register given %d times", errBadRequest, len(raw))
		}
		dec := json.NewDecoder(strings.NewReader(raw[0]))
		if err := dec.Decode(&in); err != nil {
			return RegisterRequest{}, fmt.Errorf("%w: register is not a JSON object", errBadRequest)
		}
		if dec.More() {
			return RegisterRequest{}, fmt.Errorf("%w: trailing data after register JSON", errBadRequest)
		}
	} else {
		in.APIKey = form.Get("register[apiKey]")
		in.SystemURL = form.Get("register[systemUrl]")
		in.Token = form.Get("register[token]")
	}
	in.APIKey, in.SystemURL, in.Token = strings.TrimSpace(in.APIKey), strings.TrimSpace(in.SystemURL), strings.TrimSpace(in.Token)
	switch {
	case in.APIKey == "" && in.SystemURL == "" && in.Token == "":
		return RegisterRequest{}, fmt.Errorf("%w: no register data", errBadRequest)
	case in.APIKey == "" || len(in.APIKey) > maxAPIKeyLen:
		return RegisterRequest{}, fmt.Errorf("%w: apiKey missing or too long", errBadRequest)
	case in.SystemURL == "" || len(in.SystemURL) > maxSystemURLLen:
		return RegisterRequest{}, fmt.Errorf("%w: systemUrl missing or too long", errBadRequest)
	case len(in.Token) > maxTokenLen:
		return RegisterRequest{}, fmt.Errorf("%w: token too long", errBadRequest)
	}
	return RegisterRequest{APIKey: redact.Secret(in.APIKey), SystemURL: in.SystemURL, Token: redact.Secret(in.Token)}, nil
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
	req, err := ParseRegister(form)
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
	if ok, inFlight := s.allowAttempt(c, systemURL, req.APIKey); !ok {
		return s.registerFromStoredState(c, systemURL, req.APIKey, inFlight) // a replay costs the shop's CRM nothing
	}
	acc, err := s.connector.Connect(c.Request().Context(), systemURL, req.APIKey)
	if acc.ID != "" {
		c.Set("account_id", acc.ID)
	}
	if err != nil {
		s.attemptEnded(c, systemURL, req.APIKey, true)
		return s.registerFailed(c, err)
	}
	s.attemptEnded(c, systemURL, req.APIKey, false)
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
