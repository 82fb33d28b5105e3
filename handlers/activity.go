package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/store"
)

// ActivityRequest is the CRM's activity callback (spec §5).
type ActivityRequest struct {
	ClientID  redact.Secret
	SystemURL string
	Active    bool
	Freeze    bool
}

// ParseActivity reads the activity callback's form.
func ParseActivity(form map[string][]string) (ActivityRequest, error) {
	get := func(k string) string {
		if v := form[k]; len(v) > 0 {
			return strings.TrimSpace(v[0])
		}
		return ""
	}
	req := ActivityRequest{ClientID: redact.Secret(get("clientId")), SystemURL: get("systemUrl")}
	if req.ClientID.IsZero() || len(req.ClientID.Reveal()) > 256 {
		return ActivityRequest{}, fmt.Errorf("%w: clientId missing or too long", errBadRequest)
	}
	if len(req.SystemURL) > maxSystemURLLen {
		return ActivityRequest{}, fmt.Errorf("%w: systemUrl too long", errBadRequest)
	}
	var activity struct {
		Active *bool `json:"active"`
		Freeze bool  `json:"freeze"`
	}
	if err := json.Unmarshal([]byte(get("activity")), &activity); err != nil || activity.Active == nil {
		return ActivityRequest{}, fmt.Errorf("%w: activity is not {\"active\":…,\"freeze\":…}", errBadRequest)
	}
	req.Active, req.Freeze = *activity.Active, activity.Freeze
	return req, nil
}

// handleActivity applies the CRM's activity callback: the module was
// switched on or off, frozen or unfrozen, or the shop moved to a new address.
func (s *server) handleActivity(c echo.Context) error {
	form, err := formValues(c)
	if err != nil {
		return err
	}
	req, err := ParseActivity(form)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	acc, err := s.accounts.FindByClientID(ctx, req.ClientID)
	if err != nil {
		return notFoundAs(err, errUnknownClient)
	}
	c.Set("account_id", acc.ID)
	if req.SystemURL != "" {
		moved, err := s.addresses.Canonical(req.SystemURL)
		if err != nil {
			return err
		}
		if moved != acc.SystemURL {
			if _, err := s.connector.Move(ctx, acc, moved); err != nil {
				return err
			}
			s.log.InfoContext(ctx, "shop moved to a new address", "account_id", acc.ID, "from", acc.SystemURL, "to", moved)
		}
	}
	if _, err := s.accounts.SetActivity(ctx, acc.ID, req.Active, req.Freeze); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, webhookReply{Success: true})
}

// notFoundAs replaces store.ErrNotFound with a more precise error.
func notFoundAs(err, with error) error {
	if errors.Is(err, store.ErrNotFound) {
		return with
	}
	return err
}
