package serviceapi

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/modulehub/simpleconnect/store"
)

// credentials is what a module's service gets to call a shop's CRM by
// itself: the one reply of the service that holds an API key.
type credentials struct {
	ID        string            `json:"id"`
	SystemURL string            `json:"systemUrl"`
	APIKey    string            `json:"apiKey"`
	Active    bool              `json:"active"`
	Frozen    bool              `json:"frozen"`
	Settings  map[string]string `json:"settings"`
}

// handleCredentials: GET /service/api/accounts/{id}/credentials. The read
// is appended to the event stream before the key leaves: a read that
// cannot be recorded does not happen. A pending account, or one whose
// key is key_revoked or scopes_missing, answers 409 naming the state.
func (a *API) handleCredentials(c echo.Context) (err error) {
	defer func() { a.d.Metrics.CredentialsRead(a.d.Outcome(err)) }()
	id := c.Param("id")
	if !validID(id) {
		return store.ErrNotFound
	}
	ctx := c.Request().Context()
	acc, err := a.d.Accounts.Get(ctx, id)
	if err != nil {
		return err
	}
	c.Set("account_id", acc.ID)
	if !acc.Connected || acc.APIKey.IsZero() {
		return ErrPending
	}
	// A key the health check found dead is not handed out: the caller
	// would only trip on it. Switched off or frozen, the key is still
	// the shop's (active, frozen say so).
	if err := keyHealthy(acc); err != nil {
		return err
	}
	if err := a.d.Accounts.NoteCredentialsRead(ctx, acc, tokenID(c)); err != nil {
		return errors.Join(errors.New("serviceapi: recording a credentials read"), err)
	}
	settings := acc.Settings
	if settings == nil {
		settings = map[string]string{}
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, credentials{
		ID: acc.ID, SystemURL: acc.SystemURL, APIKey: acc.APIKey.Reveal(),
		Active: acc.Active, Frozen: acc.Frozen, Settings: settings,
	})
}
