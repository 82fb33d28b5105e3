package handlers

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/modulehub/simpleconnect/docs"
	"github.com/modulehub/simpleconnect/redact"
)

// serviceTokens are SERVICE_TOKEN's tokens, none when the service API is
// not wired: either way, /service/api then answers 404 to everyone.
func (s *server) serviceTokens() []redact.Secret {
	if s.service == nil {
		return nil
	}
	return s.cfg.ServiceTokens
}

// handleOpenAPI serves docs/openapi.yaml to the admin API's token holders
// (the service API serves the same document to its own).
func handleOpenAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/yaml", docs.OpenAPI)
}
