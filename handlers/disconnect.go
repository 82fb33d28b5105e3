package handlers

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// disconnectView is the confirmation step: without JavaScript, "are you
// sure?" is a page of its own.
type disconnectView struct {
	page
	Module    string
	SystemURL string
	CSRF      string
}

// handleDisconnectConfirm asks before switching the module off.
func (s *server) handleDisconnectConfirm(c echo.Context) error {
	noStore(c)
	sess, acc, err := s.session(c)
	if err != nil {
		return err
	}
	if !acc.Connected || !acc.Active {
		return c.Redirect(http.StatusSeeOther, "/account") // nothing to switch off; the page says why
	}
	return c.Render(http.StatusOK, "disconnect.html", disconnectView{
		page:   s.newPage(c, s.titled(s.localizer(c).T("disconnect.confirm.title"))),
		Module: s.cfg.ModuleName, SystemURL: acc.SystemURL, CSRF: sess.CSRF.Reveal(),
	})
}

// handleDisconnect switches the module off in the shop's CRM (an edit with
// active:false), then marks the account inactive. When the CRM refuses,
// nothing changes and the page says why.
func (s *server) handleDisconnect(c echo.Context) error {
	sess, acc, _, err := s.sessionForm(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if !s.allowAttempt(c, acc.SystemURL, acc.APIKey).OK {
		return errShopBusy
	}
	if _, err := s.connector.Deactivate(ctx, acc.ID, false); err != nil {
		r := replyFor(err)
		l := s.localizer(c)
		key := "disconnect.failed." + r.code
		if !l.Has(key) {
			return err // ours, not the CRM's: the error handler logs it
		}
		c.Set("outcome", r.code)
		if cur, gerr := s.accounts.Get(ctx, acc.ID); gerr == nil {
			acc = cur
		}
		v := s.accountView(c, sess, acc)
		v.Alert = l.T("disconnect.failed") + " " + l.T(key)
		var explained interface{ Reason() string }
		if errors.As(err, &explained) && explained.Reason() != "" {
			v.Alert += " " + l.T("disconnect.crm_said", strings.TrimSuffix(explained.Reason(), "."))
		}
		return s.renderAccount(c, r.status, v)
	}
	c.Set("outcome", Outcome(nil))
	return c.Redirect(http.StatusSeeOther, "/account?done=disconnected")
}
