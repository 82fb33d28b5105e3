package handlers

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/modulehub/simpleconnect/connect"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/webhook"
)

// handleActivity applies the CRM's activity callback: the module was
// switched on or off, frozen or unfrozen, or the shop moved to a new address.
func (s *server) handleActivity(c echo.Context) error {
	form, err := formValues(c)
	if err != nil {
		return err
	}
	req, err := webhook.ParseActivity(form)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	acc, err := s.accounts.FindByClientID(ctx, req.ClientID)
	if err != nil {
		return notFoundAs(err, errUnknownClient)
	}
	c.Set("account_id", acc.ID)
	if req.SystemURL == "" {
		c.Set("shop_url", acc.SystemURL) // the errorMsg's language: the shop's (errors.go)
	}
	var moved string
	follow := false
	if req.SystemURL != "" {
		canonical, err := s.addresses.Canonical(req.SystemURL)
		if err != nil {
			// Not an address we would talk to: the switch still happened in
			// the CRM, so it is applied, and the move is refused.
			// (Never contacted nor stored: with follow false the address only
			// tells a move from a plain switch.)
			if _, aerr := s.connector.Activity(ctx, acc, stateOf(req), req.SystemURL, false); aerr != nil && !errors.Is(aerr, connect.ErrMoveRefused) {
				return aerr
			}
			return fmt.Errorf("%w: %w", connect.ErrMoveRefused, err)
		}
		if canonical != acc.SystemURL {
			moved, follow = canonical, s.addresses.Follows(canonical)
		}
	}
	if _, err := s.connector.Activity(ctx, acc, stateOf(req), moved, follow); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, webhookReply{Success: true})
}

// stateOf is the callback's switch as the store keeps it.
func stateOf(r webhook.ActivityRequest) store.State {
	return store.State{Active: r.Active, Frozen: r.Freeze}
}

// notFoundAs replaces store.ErrNotFound with a more precise error.
func notFoundAs(err, with error) error {
	if errors.Is(err, store.ErrNotFound) {
		return with
	}
	return err
}
