package handlers

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modulehub/simpleconnect/ratelimit"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/verify"
)

// Limits by outcome, not by caller. The CRM is one caller with a few
// egress addresses, shared by every shop; a limit on all of its requests
// refuses shops. So:
//
//   - a request that verifies (a register with a valid token, an activity
//     callback or login with a known clientId) is never refused by a
//     limiter;
//   - a request that fails its checks (unreadable, bad token, unknown
//     clientId) counts against its client address's failure budget; past
//     it, the address's failures are answered at once, with no further
//     store or CRM work and no log line each;
//   - what a valid register costs the shop (calls to its CRM) is bounded
//     per (shop, API key) pair; past the bound, the register is answered
//     from the stored state.

// FailureBudget counts failed requests per client address (ratelimit).
type FailureBudget interface {
	Fail(ctx context.Context, addr string) (ratelimit.Verdict, error)
}

// AttemptBudget bounds the attempts one (shop, API key) pair makes at the
// shop's CRM (ratelimit); past it, it says whether the pair's last attempt
// may still be under way.
type AttemptBudget interface {
	Allow(ctx context.Context, systemURL string, apiKey redact.Secret) (ratelimit.AttemptVerdict, error)
	Ended(ctx context.Context, systemURL string, apiKey redact.Secret, v ratelimit.AttemptVerdict) error
	InFlight(ctx context.Context, systemURL string, apiKey redact.Secret) (bool, error)
}

var (
	_ FailureBudget = (*ratelimit.Failures)(nil)
	_ AttemptBudget = (*ratelimit.Attempts)(nil)
)

// failures are the errors that count against a client address: what a
// request can get wrong before it proves anything. Whatever fails after
// the request verified (the address policy, the CRM's answer) is not the
// caller's failure to retry cheaply, and is not counted.
var failures = []error{errBadRequest, errTooLarge, errUnknownClient, verify.ErrNoToken, verify.ErrBadToken}

func isFailure(err error) bool {
	for _, f := range failures {
		if errors.Is(err, f) {
			return true
		}
	}
	return false
}

// countFailures wraps a public endpoint: a request that failed its checks
// is counted against its client address, and once the address is over its
// budget the failure is answered errTooManyFailures. Requests that
// succeeded never reach the limiter. The checks themselves are cheap (an
// HMAC) or the one indexed read that tells a known clientId from an
// unknown one; everything after them is skipped for a failure anyway.
// When the limiter fails (Redis down), the failure is answered as it was.
func (s *server) countFailures() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			err := next(c)
			if err == nil || s.failures == nil || !isFailure(err) {
				return err
			}
			ctx := c.Request().Context()
			v, ferr := s.failures.Fail(ctx, c.RealIP())
			if ferr != nil {
				s.log.WarnContext(ctx, "failure budget unavailable; answering the failure as usual", "err", ferr)
				return err
			}
			if !v.Over {
				return err
			}
			if v.First { // once per address and minute on this replica, not per request
				s.log.WarnContext(ctx, "client address over its failure budget: its failed requests are refused until it refills",
					"client", c.RealIP(), "route", c.Path(), "retry_after_s", retryAfterSeconds(v.RetryAfter.Seconds()))
			}
			c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(v.RetryAfter.Seconds())))
			c.Set("outcome", Outcome(errTooManyFailures))
			s.metrics.Limited("failures")
			return errTooManyFailures
		}
	}
}

func retryAfterSeconds(s float64) int { return max(1, int(math.Ceil(s))) }

// allowAttempt asks the per-(shop, key) bound whether one more attempt may
// reach the shop's CRM; when not, whether the pair's last attempt may still
// be under way. When the bound cannot be asked (Redis down), it may:
// refusing a shop because a counter is unreachable would be worse than a
// few extra calls.
func (s *server) allowAttempt(c echo.Context, systemURL string, apiKey redact.Secret) ratelimit.AttemptVerdict {
	if s.attempts == nil {
		return ratelimit.AttemptVerdict{OK: true}
	}
	v, err := s.attempts.Allow(c.Request().Context(), systemURL, apiKey)
	if err != nil {
		s.log.WarnContext(c.Request().Context(), "attempt bound unavailable; letting the attempt through", "err", err)
		return ratelimit.AttemptVerdict{OK: true}
	}
	if !v.OK {
		s.metrics.Limited("shop_key")
	}
	return v
}

// attemptEnded tells the bound that an attempt of the pair ended, so that
// registers past the bound stop waiting for it (best effort: they stop at
// its deadline anyway). A failure is told before the reply. A success is
// told, off the reply's path, only when the attempt took the pair's last
// slot (v.Last): registers are refused only once the slots are gone, so
// the attempt they wait for is always one that took the last slot (the
// bound keeps one clock, Redis's). A register with slots left (the usual
// one: a new key per connection) saves the round trip.
func (s *server) attemptEnded(c echo.Context, v ratelimit.AttemptVerdict, systemURL string, apiKey redact.Secret, failed bool) {
	if s.attempts == nil || (!failed && !v.Last) {
		return
	}
	tell := func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := s.attempts.Ended(ctx, systemURL, apiKey, v); err != nil {
			s.log.WarnContext(ctx, "attempt bound unavailable; registers waiting for this attempt wait for its deadline", "err", err)
		}
	}
	ctx := context.WithoutCancel(c.Request().Context())
	if failed {
		tell(ctx)
		return
	}
	go tell(ctx)
}

// registerFromStoredState answers a register past its pair's bound without
// calling the CRM: success when this very key is the shop's active key (a
// replay of a register that already worked), else errShopBusy. Keys are
// compared in constant time. While the pair's last attempt that went is
// still under way (a double click, the CRM retrying, replays racing a
// first register whose account does not exist yet), its outcome is the
// answer: the stored state is read again until it shows this key active
// or the attempt ended, at most CRM_TIMEOUT (and its writes) after it
// began. A pair with nothing under way is answered at once.
func (s *server) registerFromStoredState(c echo.Context, systemURL string, apiKey redact.Secret, inFlight bool) error {
	ctx := c.Request().Context()
	deadline := time.Now().Add(s.cfg.CRMTimeout + time.Second)
	pause := 10 * time.Millisecond
	for {
		acc, err := s.accounts.FindBySystemURL(ctx, systemURL)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return s.registerFailed(c, err)
		default:
			c.Set("account_id", acc.ID)
			if acc.Connected && acc.Active && !apiKey.IsZero() && acc.APIKey.Equal(apiKey) {
				c.Set("outcome", outcomeReplayed)
				s.metrics.Register(outcomeReplayed)
				return c.JSON(http.StatusOK, webhookReply{Success: true, AccountURL: s.cfg.PublicURLFor("/account")})
			}
		}
		if !inFlight || time.Now().Add(pause).After(deadline) {
			return s.registerFailed(c, errShopBusy)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return s.registerFailed(c, ctx.Err())
		case <-t.C:
		}
		pause = min(2*pause, 250*time.Millisecond)
		if inFlight, err = s.attempts.InFlight(ctx, systemURL, apiKey); err != nil {
			inFlight = true // cannot tell: keep waiting, up to the deadline
		}
	}
}

// outcomeReplayed is a register answered from the stored state: the key
// was already the shop's active key.
const outcomeReplayed = "replayed"
