package handlers

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/modulehub/simpleconnect/connect"
	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/handlers/serviceapi"
	"github.com/modulehub/simpleconnect/i18n"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/verify"
	"github.com/modulehub/simpleconnect/webhook"
)

// Errors the handlers raise themselves.
var (
	errBadRequest     = webhook.ErrBadRequest // a form that is not the CRM's; the one sentinel for every unreadable request
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
	// key names the text in the i18n catalogs: "card.*" for what the module
	// card can show (in the shop's language; the admin API reads the same
	// text in English), "error.*" for what only pages show, "admin.*" for
	// what only the admin API does.
	key    string
	reason bool // append the CRM's (or the address check's) own explanation, when it gave one
}

// replies maps every failure to its reply; the words are in the catalogs.
// Order matters: the first match wins.
var replies = []reply{
	{errTooLarge, http.StatusRequestEntityTooLarge, "too_large", "card.too_large", false},
	{errBadRequest, http.StatusBadRequest, "bad_request", "card.bad_request", false},
	{verify.ErrNoToken, http.StatusUnauthorized, "bad_token", "card.no_token", false},
	{verify.ErrBadToken, http.StatusUnauthorized, "bad_token", "card.bad_token", false},
	{verify.ErrAddressInvalid, http.StatusBadRequest, "bad_system_url", "card.address_invalid", true},
	{verify.ErrAddressNotAllowed, http.StatusBadRequest, "bad_system_url", "card.address_not_allowed", false},
	{crm.ErrBlocked, http.StatusBadRequest, "bad_system_url", "card.address_not_allowed", false},
	{connect.ErrUnknownKey, http.StatusBadGateway, "crm_unknown_key", "card.crm_unknown_key", false},
	{connect.ErrMissingScopes, http.StatusBadGateway, "crm_missing_scopes", "card.crm_missing_scopes", true},
	{crm.ErrNoAccount, http.StatusBadGateway, "crm_no_account", "card.crm_no_account", false},
	{crm.ErrValidation, http.StatusBadGateway, "crm_denied", "card.crm_rejected", true},
	{crm.ErrUnauthorized, http.StatusBadGateway, "crm_denied", "card.crm_unauthorized", false},
	{crm.ErrForbidden, http.StatusBadGateway, "crm_denied", "card.crm_forbidden", false},
	{crm.ErrPaymentRequired, http.StatusBadGateway, "crm_payment_required", "card.crm_payment_required", false},
	{crm.ErrMethodNotFound, http.StatusBadGateway, "crm_denied", "card.crm_method_not_found", false},
	{crm.ErrRateLimited, http.StatusServiceUnavailable, "crm_unavailable", "card.crm_rate_limited", false},
	{crm.ErrUnavailable, http.StatusServiceUnavailable, "crm_unavailable", "card.crm_unavailable", false},
	{connect.ErrBusy, http.StatusServiceUnavailable, "busy", "card.busy", false},
	{crm.ErrUnexpected, http.StatusBadGateway, "crm_unexpected", "card.crm_unexpected", false},
	{errUnknownClient, http.StatusNotFound, "unknown_client", "card.unknown_client", false},
	{store.ErrNotFound, http.StatusNotFound, "not_found", "card.not_found", false},
	{store.ErrAddressTaken, http.StatusConflict, "address_taken", "card.address_taken", false},
	{connect.ErrMoveRefused, http.StatusConflict, "move_refused", "card.move_refused", false},
	{store.ErrUnreadable, http.StatusInternalServerError, "unreadable", "card.unreadable", false},
	{errNoSession, http.StatusUnauthorized, "no_session", "error.no_session", false},
	{errBadCSRF, http.StatusForbidden, "bad_csrf", "error.bad_csrf", false},
	{errAdminDisable, http.StatusNotFound, "not_found", "admin.not_found", false},
	{errAdminAuth, http.StatusUnauthorized, "unauthorized", "admin.unauthorized", false},
	{errAdminQuery, http.StatusBadRequest, "bad_query", "admin.bad_query", true},
	{connect.ErrNotConnected, http.StatusConflict, "not_connected", "card.not_connected", false},
	{errNotActive, http.StatusConflict, "not_active", "error.not_active", false},
	{errTooManyFailures, http.StatusTooManyRequests, "too_many_failures", "card.too_many_failures", false},
	{errShopBusy, http.StatusTooManyRequests, "shop_busy", "card.shop_busy", false},
	// The service API (handlers/serviceapi): nothing was sent to the CRM.
	{serviceapi.ErrBadPath, http.StatusBadRequest, "bad_path", "service.bad_path", false},
	{serviceapi.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large", "service.too_large", false},
	{serviceapi.ErrBadBody, http.StatusBadRequest, "bad_request", "service.bad_body", false},
	{serviceapi.ErrPending, http.StatusConflict, "not_connected", "service.pending", false},
	{serviceapi.ErrInactive, http.StatusConflict, "inactive", "service.inactive", false},
	{serviceapi.ErrFrozen, http.StatusConflict, "frozen", "service.frozen", false},
	{serviceapi.ErrKeyRevoked, http.StatusConflict, "key_revoked", "service.key_revoked", false},
	{serviceapi.ErrScopesMissing, http.StatusConflict, "scopes_missing", "service.scopes_missing", false},
	{serviceapi.ErrQueueFull, http.StatusTooManyRequests, "crm_rate_limited", "service.crm_rate_limited", false},
	{serviceapi.ErrCRMUnreachable, http.StatusBadGateway, "crm_unreachable", "service.crm_unreachable", false},
	{serviceapi.ErrTokensOff, http.StatusNotFound, "not_found", "card.not_found", false},
	{errNotFound, http.StatusNotFound, "not_found", "card.not_found", false},
	{errMethodNotAllow, http.StatusMethodNotAllowed, "method_not_allowed", "card.method_not_allowed", false},
}

var internalReply = reply{nil, http.StatusInternalServerError, "internal", "card.internal", false}

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

// message is the reply's text in l's language, with the explanation
// appended when the row asks for it: the address check's reason in the
// same language, or the CRM's own words (or the missing scopes' names) as
// they came.
func (r reply) message(l i18n.Localizer, err error) string {
	msg := l.T(r.key)
	if !r.reason {
		return msg
	}
	var (
		address   *verify.AddressError
		explained interface{ Reason() string }
		reason    string
	)
	switch {
	case errors.As(err, &address) && l.Has("card.address."+address.Code()):
		reason = l.T("card.address." + address.Code())
	case errors.As(err, &explained):
		reason = explained.Reason()
	}
	if reason != "" {
		return msg + ": " + strings.TrimSuffix(reason, ".") + "."
	}
	return msg + "."
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
	case strings.HasPrefix(path, "/admin/api/") || strings.HasPrefix(path, "/service/api/"):
		return adminStyle // the service API answers with the same problems
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
		werr = c.JSON(http.StatusOK, webhookReply{Success: false, ErrorMsg: r.message(s.cardLocalizer(c), err)})
	case adminStyle: // operators read English
		werr = c.JSON(r.status, problem{problemBody{Status: r.status, Code: r.code, Message: r.message(s.words.For("en"), err)}})
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

// cardLocalizer picks the language of a module-card reply (/register,
// /activity): the one the CRM asks for in Accept-Language, else the shop's,
// told by its CRM host (.ru Russian, .es Spanish), else English.
func (s *server) cardLocalizer(c echo.Context) i18n.Localizer {
	if lang, ok := s.words.MatchHeader(c.Request().Header.Get("Accept-Language")); ok {
		return s.words.For(lang)
	}
	return s.words.For(ShopLanguage(shopURL(c)))
}

// shopURL is the shop address a webhook named: the register's systemUrl
// (the handler keeps it once read), or the activity callback's form field.
// The form is read only when the handler has parsed it already.
func shopURL(c echo.Context) string {
	if u, ok := c.Get("shop_url").(string); ok {
		return u
	}
	if form := c.Request().Form; form != nil {
		return form.Get("systemUrl")
	}
	return ""
}

// ShopLanguage is the language of a shop's module-card messages, told by
// the top-level domain of its CRM address: "ru" for .ru, "es" for .es,
// English otherwise (.com, .io, .pro are international).
func ShopLanguage(systemURL string) string {
	u, err := url.Parse(strings.TrimSpace(systemURL))
	if err != nil {
		return i18n.Default
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	switch host[strings.LastIndex(host, ".")+1:] {
	case "ru":
		return "ru"
	case "es":
		return "es"
	}
	return i18n.Default
}
