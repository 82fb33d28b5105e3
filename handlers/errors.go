package handlers

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/modulehub/simpleconnect/connect"
	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/verify"
)

// Errors the handlers raise themselves.
var (
	errBadRequest     = errors.New("request could not be read")
	errTooLarge       = errors.New("request body too large")
	errUnknownClient  = errors.New("unknown clientId")
	errNoSession      = errors.New("no session")
	errBadCSRF        = errors.New("csrf token mismatch")
	errNotFound       = errors.New("no such route")
	errMethodNotAllow = errors.New("method not allowed")
	errNotActive      = errors.New("the module is not active for this shop")
	// errTooManyFailures refuses a failed request from a client address
	// over its failure budget.
	errTooManyFailures = errors.New("client address over its failure budget")
	// errShopBusy refuses an attempt past its (shop, key) pair's bound.
	errShopBusy = errors.New("too many attempts for this shop")
)

// reply is what a failure looks like to its reader.
type reply struct {
	err    error
	status int    // for pages and the admin API; webhooks always answer 200
	code   string // stable machine-readable name (admin API, metrics)
	msg    string // shown to the shop owner in the module card or page
	reason bool   // append the CRM's own explanation, when it gave one
}

// replies is the only place with user-facing wording of failures. Order
// matters: the first match wins.
var replies = []reply{
	{errTooLarge, http.StatusRequestEntityTooLarge, "too_large", "The request is too large.", false},
	{errBadRequest, http.StatusBadRequest, "bad_request", "The connection request could not be read. Please connect again from the CRM marketplace.", false},
	{verify.ErrNoToken, http.StatusUnauthorized, "bad_token", "The connection request has no token. Please connect again from the CRM marketplace.", false},
	{verify.ErrBadToken, http.StatusUnauthorized, "bad_token", "The connection request has an invalid token: this module's secret does not match. Please tell the module's developer.", false},
	{verify.ErrAddressInvalid, http.StatusBadRequest, "bad_system_url", "Your CRM address cannot be used", true},
	{verify.ErrAddressNotAllowed, http.StatusBadRequest, "bad_system_url", "This module can only be connected from a RetailCRM / Simla.com account.", false},
	{crm.ErrBlocked, http.StatusBadRequest, "bad_system_url", "This module can only be connected from a RetailCRM / Simla.com account.", false},
	{connect.ErrUnknownKey, http.StatusBadGateway, "crm_unknown_key", "Your CRM does not know this API key. Connect the module again from the CRM marketplace.", false},
	{connect.ErrMissingScopes, http.StatusBadGateway, "crm_missing_scopes", "The API key lacks permissions this module needs. Connect again and allow", true},
	{crm.ErrNoAccount, http.StatusBadGateway, "crm_no_account", "No CRM account answers at this address. Check the address and connect again.", false},
	{crm.ErrValidation, http.StatusBadGateway, "crm_denied", "Your CRM rejected the module registration", true},
	{crm.ErrUnauthorized, http.StatusBadGateway, "crm_denied", "Your CRM did not accept the API key. Please connect again from the CRM marketplace.", false},
	{crm.ErrForbidden, http.StatusBadGateway, "crm_denied", "The API key has no access to integration modules. Allow the module's API methods for the key in the CRM settings and connect again.", false},
	{crm.ErrPaymentRequired, http.StatusBadGateway, "crm_payment_required", "Your CRM account has insufficient funds to connect this module. Top up the balance and connect again.", false},
	{crm.ErrMethodNotFound, http.StatusBadGateway, "crm_denied", "Your CRM does not offer the API this module needs (method not found). Please tell the module's developer.", false},
	{crm.ErrRateLimited, http.StatusServiceUnavailable, "crm_unavailable", "Your CRM is busy right now (too many requests). Try again in a minute.", false},
	{crm.ErrUnavailable, http.StatusServiceUnavailable, "crm_unavailable", "Your CRM is not answering. Try again in a few minutes.", false},
	{crm.ErrUnexpected, http.StatusBadGateway, "crm_unexpected", "Your CRM gave an unexpected answer. Try again in a few minutes.", false},
	{errUnknownClient, http.StatusNotFound, "unknown_client", "This module is not connected to your CRM any more. Connect it again from the CRM marketplace.", false},
	{store.ErrNotFound, http.StatusNotFound, "not_found", "Not found.", false},
	{store.ErrAddressTaken, http.StatusConflict, "address_taken", "Another account of this module already uses this CRM address.", false},
	{connect.ErrMoveRefused, http.StatusConflict, "move_refused", "Your CRM's address has changed. Connect the module again from the marketplace of your CRM at its new address.", false},
	{store.ErrUnreadable, http.StatusInternalServerError, "unreadable", "This module's record for your CRM cannot be read. Connect the module again from the CRM marketplace.", false},
	{errNoSession, http.StatusUnauthorized, "no_session", "Your session has ended. Open the module again from your CRM.", false},
	{errBadCSRF, http.StatusForbidden, "bad_csrf", "This form has expired. Reload the page and try again.", false},
	{errAdminDisable, http.StatusNotFound, "not_found", "Not found.", false},
	{errAdminAuth, http.StatusUnauthorized, "unauthorized", "A valid bearer token is required.", false},
	{errAdminQuery, http.StatusBadRequest, "bad_query", "The query is not valid", true},
	{connect.ErrNotConnected, http.StatusConflict, "not_connected", "The account has no key the CRM accepted yet.", false},
	{errNotActive, http.StatusConflict, "not_active", "The module is not active for this shop: it is switched off, frozen, not connected yet, or its API key no longer works.", false},
	{errTooManyFailures, http.StatusTooManyRequests, "too_many_failures", "Too many failed requests came from this address. Try again in a few minutes.", false},
	{errShopBusy, http.StatusTooManyRequests, "shop_busy", "Too many attempts for this shop. Try again in a minute.", false},
	{errNotFound, http.StatusNotFound, "not_found", "Not found.", false},
	{errMethodNotAllow, http.StatusMethodNotAllowed, "method_not_allowed", "This address does not accept this kind of request.", false},
}

var internalReply = reply{nil, http.StatusInternalServerError, "internal", "Something went wrong on our side. Try again in a few minutes.", false}

// replyFor finds the reply for err: the table, then echo's own HTTP
// errors, else the internal error.
func replyFor(err error) reply {
	for _, r := range replies {
		if errors.Is(err, r.err) {
			return r
		}
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			return replyFor(errNotFound)
		case http.StatusMethodNotAllowed:
			return replyFor(errMethodNotAllow)
		case http.StatusRequestEntityTooLarge:
			return replyFor(errTooLarge)
		case http.StatusBadRequest, http.StatusUnsupportedMediaType:
			return replyFor(errBadRequest)
		}
	}
	return internalReply
}

// message is the reply's text, with the CRM's or the checker's own
// explanation appended when the row asks for it.
func (r reply) message(err error) string {
	if !r.reason {
		return r.msg
	}
	var explained interface{ Reason() string }
	if errors.As(err, &explained) && explained.Reason() != "" {
		return r.msg + ": " + strings.TrimSuffix(explained.Reason(), ".") + "."
	}
	return r.msg + "."
}

// Outcome names a failure for logs and metrics: a stable code, never a
// message with data in it.
func Outcome(err error) string {
	if err == nil {
		return "ok"
	}
	return replyFor(err).code
}

type style int

const (
	webhookStyle style = iota
	adminStyle
	pageStyle
)

// styleOf decides how to answer from the URL, not the route: a 404 or 405
// has no route.
func styleOf(path string) style {
	switch {
	case path == "/config" || path == "/register" || path == "/activity":
		return webhookStyle
	case strings.HasPrefix(path, "/admin/api/"):
		return adminStyle
	default:
		return pageStyle
	}
}

// webhookReply is the CRM's reply shape (spec §2).
type webhookReply struct {
	Success    bool   `json:"success"`
	ErrorMsg   string `json:"errorMsg,omitempty"`
	AccountURL string `json:"accountUrl,omitempty"`
}

// problem is the admin API's error shape.
type problem struct {
	Error problemBody `json:"error"`
}

type problemBody struct {
	Status  int    `json:"status"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// handleError is echo's one error handler.
func (s *server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	r := replyFor(err)
	if r.status >= 500 && r.code == internalReply.code {
		s.log.ErrorContext(c.Request().Context(), "request failed",
			"route", c.Path(), "request_id", requestIDOf(c), "err", err)
	}
	var werr error
	switch styleOf(c.Request().URL.Path) {
	case webhookStyle:
		werr = c.JSON(http.StatusOK, webhookReply{Success: false, ErrorMsg: r.message(err)})
	case adminStyle:
		werr = c.JSON(r.status, problem{problemBody{Status: r.status, Code: r.code, Message: r.message(err)}})
	default:
		if c.Request().Method == http.MethodHead {
			werr = c.NoContent(r.status)
		} else {
			werr = s.renderErrorPage(c, r, err)
		}
	}
	if werr != nil {
		s.log.ErrorContext(c.Request().Context(), "writing error reply failed", "err", werr)
	}
}
