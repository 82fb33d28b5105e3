package handlers

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/modulehub/simpleconnect/handlers/serviceapi"
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

// requestIDOf reads the id back from the reply's header, where requestID
// put it: not from echo's context store, whose map would be allocated for
// every request only for this (BENCHMARKS.md).
func requestIDOf(c echo.Context) string {
	return c.Response().Header().Get(echo.HeaderXRequestID)
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
			// The route template, never the path: a request no route matched
			// is one value, whatever path it invented (metrics, logs).
			route := c.Path()
			if route == "" {
				route = unmatchedRoute
			}
			s.metrics.HTTP(route, c.Request().Method, c.Response().Status, time.Since(start))
			level := slog.LevelInfo
			outcome, _ := c.Get("outcome").(string)
			if quietRoute(route) || outcome == "too_many_failures" {
				// Probes and /config, and failures refused past their
				// budget: one line per address and minute says so
				// (countFailures).
				level = slog.LevelDebug
			}
			ctx := c.Request().Context()
			if !s.log.Enabled(ctx, level) {
				return nil // probes at the default level: build nothing
			}
			// The record is built by hand with typed attributes: no boxing of
			// key-value pairs, and no runtime.Callers for a source position
			// this line never shows (BENCHMARKS.md).
			r := slog.NewRecord(time.Now(), level, "request", 0)
			r.AddAttrs(
				slog.String("method", c.Request().Method), slog.String("route", route), slog.Int("status", c.Response().Status),
				slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000), slog.String("request_id", requestIDOf(c)),
			)
			if id, ok := c.Get("account_id").(string); ok {
				r.AddAttrs(slog.String("account_id", id))
			}
			if outcome != "" {
				r.AddAttrs(slog.String("outcome", outcome))
			}
			_ = s.log.Handler().Handle(ctx, r) // a log write that fails has nowhere better to go
			return nil
		}
	}
}

// unmatchedRoute is the route of every request no route matched.
const unmatchedRoute = "unmatched"

// quietRoute tells the routes logged at debug level only: the probes,
// which an orchestrator calls every few seconds, and /config, which answers
// the same constant bytes to every caller. A line each would cost more than
// the answer (BENCHMARKS.md); the metrics still count every call, and a
// failure is still logged by the error handler. Webhooks and pages keep a
// line each.
func quietRoute(route string) bool {
	return route == "/config" || route == "/healthz" || route == "/readyz"
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
// and a CSP that allows nothing. Pages (HTML) also get their own CSP (our
// stylesheet, script file and images, forms to ourselves, never inline
// code; the page offering "Open <module>" replaces it, renderAccount) and
// no referrer;
// JSON replies (webhooks, admin API, probes) carry only what applies to
// them, which keeps the CRM's hot calls small (BENCHMARKS.md).
func securityHeaders() echo.MiddlewareFunc {
	// Built once: canonical keys and one shared value slice per header, so a
	// request pays a few map writes instead of canonicalisations and
	// allocations. Sharing is safe: net/http only reads them, Set replaces
	// a slice and Add copies one (len == cap).
	type header struct {
		key    string
		values []string
	}
	build := func(hs ...header) []header {
		for i := range hs {
			hs[i].key = http.CanonicalHeaderKey(hs[i].key)
		}
		return hs
	}
	jsonHeaders := build(
		header{"X-Content-Type-Options", []string{"nosniff"}},
		header{"Content-Security-Policy", []string{"default-src 'none'; frame-ancestors 'none'"}},
	)
	pageHeaders := build(
		header{"X-Content-Type-Options", []string{"nosniff"}},
		header{"Referrer-Policy", []string{"no-referrer"}},
		header{"X-Frame-Options", []string{"DENY"}},
		header{"Content-Security-Policy", []string{pageCSP("")}},
	)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			headers := pageHeaders
			if servesJSON(c.Request().URL.Path) {
				headers = jsonHeaders
			}
			h := c.Response().Header()
			for _, kv := range headers {
				h[kv.key] = kv.values
			}
			return next(c)
		}
	}
}

// pageCSP is the pages' Content-Security-Policy. formTo is another origin
// a form may be sent to, besides our own: MODULE_APP_URL's, on the pages
// that offer "Open <module>" (its 303 leads there, and browsers check a
// form's redirects against form-action too); empty: our own only.
func pageCSP(formTo string) string {
	formAction := "'self'"
	if formTo != "" {
		formAction += " " + formTo
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; form-action " + formAction +
		"; frame-ancestors 'none'; base-uri 'none'"
}

// servesJSON tells the routes that only ever answer JSON (or metrics text).
func servesJSON(path string) bool {
	switch path {
	case "/config", "/register", "/activity", "/healthz", "/readyz", "/metrics":
		return true
	}
	return strings.HasPrefix(path, "/admin/api/") || strings.HasPrefix(path, "/service/api/")
}

// bodyLimit caps request bodies; the error handler answers in the caller's
// shape.
func bodyLimit(limit string) echo.MiddlewareFunc {
	return middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{
		Limit: limit,
		// The CRM proxy streams a body to the shop's CRM under a cap of its
		// own (serviceapi.DefaultMaxBody): orders are larger than forms.
		Skipper: func(c echo.Context) bool { return c.Path() == serviceapi.ProxyRoute },
	})
}

// noStore keeps account pages out of caches.
func noStore(c echo.Context) {
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().Header().Set("Pragma", "no-cache")
}
