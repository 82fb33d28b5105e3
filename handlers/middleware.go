package handlers

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// requestID takes the caller's X-Request-ID when it is a sane token, else
// makes one, and echoes it in the reply.
func requestID() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			id := c.Request().Header.Get(echo.HeaderXRequestID)
			if !saneRequestID(id) {
				var b [12]byte
				_, _ = rand.Read(b[:])
				id = hex.EncodeToString(b[:])
			}
			c.Set("request_id", id)
			c.Response().Header().Set(echo.HeaderXRequestID, id)
			return next(c)
		}
	}
}

func saneRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func requestIDOf(c echo.Context) string {
	id, _ := c.Get("request_id").(string)
	return id
}

// requestLog writes one line per request: route pattern, status, duration,
// request id. Never a body, form, query or header value.
func (s *server) requestLog() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				c.Error(err) // write the reply now, so the status below is the one sent
			}
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			attrs := []any{
				"method", c.Request().Method, "route", route, "status", c.Response().Status,
				"duration_ms", float64(time.Since(start).Microseconds()) / 1000, "request_id", requestIDOf(c),
			}
			if id, ok := c.Get("account_id").(string); ok {
				attrs = append(attrs, "account_id", id)
			}
			if outcome, ok := c.Get("outcome").(string); ok {
				attrs = append(attrs, "outcome", outcome)
			}
			s.metrics.HTTP(route, c.Request().Method, c.Response().Status, time.Since(start))
			level := slog.LevelInfo
			if route == "/healthz" || route == "/readyz" {
				level = slog.LevelDebug
			}
			s.log.Log(c.Request().Context(), level, "request", attrs...)
			return nil
		}
	}
}

// recoverPanics turns a panic into a 500 through the error handler; the log
// line has the panic value and stack, never the request.
func (s *server) recoverPanics() echo.MiddlewareFunc {
	return middleware.RecoverWithConfig(middleware.RecoverConfig{
		DisableStackAll:     true,
		DisableErrorHandler: true, // requestLog (outside) writes the reply and logs the line
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			s.log.ErrorContext(c.Request().Context(), "panic", "route", c.Path(), "err", err, "stack", string(stack))
			return fmt.Errorf("panic: %w", errPanic)
		},
	})
}

var errPanic = errors.New("handler panicked")

// securityHeaders sets what every reply carries: no sniffing, no framing,
// no referrer, a CSP without inline script.
func securityHeaders() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Response().Header()
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("X-Frame-Options", "DENY")
			h.Set("Content-Security-Policy",
				"default-src 'none'; style-src 'self'; img-src 'self' https: data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
			return next(c)
		}
	}
}

// bodyLimit caps request bodies; the error handler answers in the caller's
// shape.
func bodyLimit(limit string) echo.MiddlewareFunc {
	return middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{Limit: limit})
}

// noStore keeps account pages out of caches.
func noStore(c echo.Context) {
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().Header().Set("Pragma", "no-cache")
}
