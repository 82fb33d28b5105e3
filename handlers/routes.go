package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// maxBody caps every request body: the CRM's webhooks are a few hundred
// bytes, the account page's forms a few kilobytes.
const maxBody = "64K"

// routes is the whole HTTP surface, top to bottom.
func (s *server) routes(e *echo.Echo) {
	e.Use(
		requestID(),
		s.requestLog(),
		s.recoverPanics(),
		securityHeaders(),
		bodyLimit(maxBody),
	)

	// The CRM's webhooks (spec §1, §2, §5): HTTP 200 JSON, success or not.
	// Failures (unreadable, bad token, unknown clientId) count against the
	// client address; valid requests are never limited (limits.go).
	e.GET("/config", s.handleConfig)
	failures := s.countFailures()
	e.POST("/register", s.handleRegister, failures)
	e.POST("/activity", s.handleActivity, failures)

	// The shop owner's account page.
	e.POST("/account", s.handleAccountLogin, failures)
	e.GET("/account", s.handleAccountPage)
	e.POST("/account/logout", s.handleAccountLogout)
	e.POST("/account/settings", s.handleAccountSettings)
	e.POST("/account/settings/discard", s.handleDiscardSettings)
	e.GET("/account/disconnect", s.handleDisconnectConfirm)
	e.POST("/account/disconnect", s.handleDisconnect) // calls the shop's CRM: bounded per (shop, key)
	e.GET("/static/*", echo.WrapHandler(http.StripPrefix("/static/", staticFiles())))
	// The shop's identity for the module's own apps (tokens).
	e.POST("/account/token", s.handleAccountToken)
	e.POST("/account/open", s.handleAccountOpen)
	e.GET("/.well-known/jwks.json", s.handleJWKS)
	e.GET("/favicon.ico", s.handleFavicon)

	// Operations.
	e.GET("/healthz", s.handleHealthz)
	e.GET("/readyz", s.handleReadyz)
	if s.metrics != nil {
		e.GET("/metrics", echo.WrapHandler(s.metrics.Handler()))
	}

	// The admin API (docs/admin-api.md): bearer tokens, JSON problems.
	admin := e.Group("/admin/api", requireBearer(s.cfg.AdminTokens, "admin"))
	admin.GET("/accounts", s.handleAdminList)
	admin.GET("/accounts/:id", s.handleAdminGet)
	admin.POST("/accounts/:id/deactivate", s.handleAdminDeactivate)
	admin.POST("/accounts/:id/resync", s.handleAdminResync)
	admin.GET("/events", s.handleAdminEvents)
	admin.POST("/reseal", s.handleAdminReseal)
	admin.GET("/openapi.yaml", handleOpenAPI)
	admin.Any("/*", func(echo.Context) error { return errNotFound })

	// The service API (docs/service-api.md): the module's own services,
	// with tokens of their own (SERVICE_TOKEN), the same problems.
	service := e.Group("/service/api", requireBearer(s.serviceTokens(), "service"))
	if s.service != nil {
		s.service.Mount(service)
	}
	service.Any("/*", func(echo.Context) error { return errNotFound })
}
