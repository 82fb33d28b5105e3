package handlers

import (
	"context"
	"math"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
)

// RateLimiter decides whether a client may make one more request.
type RateLimiter interface {
	Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error)
}

// rateLimit limits requests per client address and route. When the limiter
// itself fails (Redis down), requests go through: refusing every shop
// because a counter is unreachable would be worse than a burst.
func (s *server) rateLimit() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if s.limiter == nil {
				return next(c)
			}
			ok, retryAfter, err := s.limiter.Allow(c.Request().Context(), c.Path()+":"+c.RealIP())
			if err != nil {
				s.log.WarnContext(c.Request().Context(), "rate limiter unavailable; letting the request through", "err", err)
				return next(c)
			}
			if !ok {
				c.Response().Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter.Seconds()))))
				c.Set("outcome", "rate_limited")
				return errRateLimited
			}
			return next(c)
		}
	}
}
