package serviceapi

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/tokens"
)

// Issuer signs the shop's identity for the module's apps (tokens.Issuer).
type Issuer interface {
	Issue(accountID, systemURL string) (tokens.Token, error)
}

var _ Issuer = (*tokens.Issuer)(nil)

// ErrTokensOff: no TOKEN_SIGNING_KEY, so the token route does not exist.
var ErrTokensOff = errors.New("serviceapi: tokens are off (no TOKEN_SIGNING_KEY)")

// handleToken: POST /service/api/accounts/{id}/token. A short-lived token
// naming the shop, for a backend of the module to hand to its frontend:
// only for an account whose module runs and whose key is healthy (409
// naming the state otherwise: the same rule as the proxy and the page).
func (a *API) handleToken(c echo.Context) error {
	if a.d.Tokens == nil {
		return ErrTokensOff
	}
	id := c.Param("id")
	if !validID(id) {
		return store.ErrNotFound
	}
	acc, err := a.d.Accounts.Get(c.Request().Context(), id)
	if err != nil {
		return err
	}
	c.Set("account_id", acc.ID)
	if err := Running(acc); err != nil {
		return err
	}
	tok, err := a.d.Tokens.Issue(acc.ID, acc.SystemURL)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, tok)
}
