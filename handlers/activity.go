package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/modulehub/simpleconnect/connect"
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
	var moved string
	follow := false
	if req.SystemURL != "" {
		canonical, err := s.addresses.Canonical(req.SystemURL)
		if err != nil {
			// Not an address we would talk to: the switch still happened in
			// the CRM, so it is applied, and the move is refused.
			// (Never contacted nor stored: with follow false the address only
			// tells a move from a plain switch.)
			if _, aerr := s.connector.Activity(ctx, acc, req.state(), req.SystemURL, false); aerr != nil && !errors.Is(aerr, connect.ErrMoveRefused) {
				return aerr
			}
			return fmt.Errorf("%w: %w", connect.ErrMoveRefused, err)
		}
		if canonical != acc.SystemURL {
			moved, follow = canonical, s.addresses.Follows(canonical)
		}
	}
	if _, err := s.connector.Activity(ctx, acc, req.state(), moved, follow); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, webhookReply{Success: true})
}

func (r ActivityRequest) state() store.State { return store.State{Active: r.Active, Frozen: r.Freeze} }

// notFoundAs replaces store.ErrNotFound with a more precise error.
func notFoundAs(err, with error) error {
	if errors.Is(err, store.ErrNotFound) {
		return with
	}
	return err
}
