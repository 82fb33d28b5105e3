package serviceapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/metrics"
	"github.com/modulehub/simpleconnect/ratelimit"
	"github.com/modulehub/simpleconnect/store"
)

// passedBack are the CRM's reply headers the caller gets: what the body is
// (and, for a download, its name), and when the CRM wants to hear again.
// Nothing else: no cookie of the CRM's, no redirect target, no header of
// its infrastructure.
var passedBack = []string{"Content-Type", "Content-Disposition", "Retry-After"}

// proxyMethods are the methods the CRM API knows; CONNECT, TRACE and
// invented ones are refused.
var proxyMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// handleProxy: ANY /service/api/accounts/{id}/crm/{path}. Checks come
// before anything is sent: the path, the size (a chunked body is read to
// learn it), the account's state, then the shop's turn under its rate
// limit. The CRM's status,
// Content-Type and body are passed back as they come (streamed); a
// 401/403 of the CRM is the caller's news and changes nothing here.
func (a *API) handleProxy(c echo.Context) (err error) {
	r := c.Request()
	outcome := ""
	defer func() {
		if outcome == "" {
			outcome = a.d.Outcome(err)
		}
		c.Set("outcome", outcome)
		a.d.Metrics.ProxyCall(r.Method, outcome)
	}()
	if !proxyMethods[r.Method] {
		return echo.ErrMethodNotAllowed
	}
	id := c.Param("id")
	if !validID(id) {
		return store.ErrNotFound
	}
	raw, ok := strings.CutPrefix(r.URL.EscapedPath(), "/service/api/accounts/"+id+"/crm/")
	if !ok {
		return ErrBadPath
	}
	if _, err := crm.CleanAPIPath(raw); err != nil {
		return ErrBadPath
	}
	if r.ContentLength > a.d.MaxBody {
		return ErrTooLarge
	}
	ctx := r.Context()
	// A body of unknown length (chunked) is read whole first, at most the
	// cap: streamed, one over the cap would reach the CRM cut short instead
	// of not at all. It costs up to MaxBody of memory per such call, and
	// is read before a turn is taken, so a slow upload holds none. A body
	// with a Content-Length streams: the server stops it at that length.
	var buffered []byte
	if r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(r.Body, a.d.MaxBody+1))
		switch {
		case err != nil && ctx.Err() != nil:
			outcome = "canceled"
			return nil
		case err != nil:
			return fmt.Errorf("%w: %w", ErrBadBody, err)
		case int64(len(b)) > a.d.MaxBody:
			return ErrTooLarge
		}
		buffered = b
	}

	// The shop's first turn is asked for with the account's read: one
	// Redis round trip for both. A turn taken for a call refused below is
	// lost, which only spares the CRM a call.
	var (
		acc   store.Account
		first func() (time.Duration, error)
	)
	if a.d.Pacer != nil {
		acc, err = a.d.Accounts.GetAlong(ctx, id, func(pipe redis.Pipeliner) {
			first = a.d.Pacer.ReserveAlong(ctx, pipe, id)
		})
		if err == nil && first == nil { // a store that read without queueing: the turn alone
			first = func() (time.Duration, error) { return a.d.Pacer.Reserve(ctx, id) }
		}
	} else {
		acc, err = a.d.Accounts.Get(ctx, id)
	}
	if err != nil {
		return err
	}
	c.Set("account_id", acc.ID)
	if err := Running(acc); err != nil {
		return err
	}
	var turn *reservation
	if first != nil {
		// The wait is from when Redis answered; counted from now, the
		// account's decoding later: a turn kept a little late, never early.
		d, err := first()
		turn = &reservation{time.Now().Add(d), d, err}
	}

	fr := crm.ForwardRequest{
		Method: r.Method, Path: raw, RawQuery: r.URL.RawQuery, Header: r.Header, ContentLength: r.ContentLength,
	}
	var body *capped
	switch {
	case buffered != nil:
		fr.Body, fr.ContentLength = bytes.NewReader(buffered), int64(len(buffered))
		if len(buffered) == 0 {
			fr.Body = nil
		}
	case r.Body != nil && r.Body != http.NoBody && r.ContentLength > 0:
		body = &capped{r: r.Body, left: a.d.MaxBody} // a guard: the server already holds it to its length
		fr.Body = body
	}
	if turn != nil {
		fr.Wait, fr.Ready = a.turns(c, acc.ID, *turn)
	}
	resp, err := a.d.CRM.Forward(ctx, acc.SystemURL, acc.APIKey, fr)
	switch {
	case err != nil && body != nil && body.over:
		return ErrTooLarge
	case err != nil && ctx.Err() != nil:
		outcome = "canceled" // the caller left: nobody to answer
		return nil
	case err != nil:
		return a.forwardError(c, err)
	}
	defer resp.Body.Close()
	h := c.Response().Header()
	for _, name := range passedBack {
		if v := resp.Header.Get(name); v != "" {
			h.Set(name, v)
		}
	}
	h.Set("Cache-Control", "no-store")
	outcome = "crm_" + metrics.StatusClass(resp.StatusCode)
	c.Response().WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return nil
	}
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	if _, err := io.CopyBuffer(c.Response(), resp.Body, *buf); err != nil {
		// The status is out: all that is left is to say so in the log.
		a.d.Log.WarnContext(ctx, "proxied reply cut short", "account_id", acc.ID, "err", err)
	}
	return nil
}

// copyBuffers hold the buffers replies are streamed through: io.Copy
// would make a new 32 KiB one for every call (neither side offers
// ReadFrom/WriteTo), most of what a proxied call allocated.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// reservation is a turn: when it is (on this process's clock, taken when
// its reply was read), how far ahead it was, or why there is none.
type reservation struct {
	at  time.Time
	in  time.Duration
	err error
}

// maxRetakes bounds how often a call that missed its turn takes a new one.
const maxRetakes = 3

// turns are the call's waits under the shop's rate limit (crm.Forward's
// Wait and Ready): before every attempt, its turn (the first one, ahead,
// was taken with the account's read); a full queue answers 429 with
// Retry-After (whole seconds, at least 1), nothing sent.
//
// A turn is a moment, not a ticket: an attempt that has its connection
// later than the pacer's slack after its turn (a new connection's dial
// and TLS handshake, a process starved of CPU) takes a new one instead of
// going at once. Calls late together would otherwise reach the CRM
// together, more than its rate in one second.
func (a *API) turns(c echo.Context, accountID string, ahead reservation) (wait, ready func(context.Context) error) {
	first := true
	var at time.Time // the current attempt's turn
	var waited time.Duration
	take := func(ctx context.Context, res reservation) error {
		var full *ratelimit.QueueFullError
		if errors.As(res.err, &full) {
			c.Response().Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(full.RetryAfter.Seconds())))))
			return ErrQueueFull
		}
		if res.err != nil {
			return res.err
		}
		at, waited = res.at, waited+res.in
		return sleepUntil(ctx, res.at)
	}
	reserve := func(ctx context.Context) reservation {
		d, err := a.d.Pacer.Reserve(ctx, accountID)
		return reservation{time.Now().Add(d), d, err}
	}
	wait = func(ctx context.Context) error {
		res := reservation{}
		if first {
			first, res = false, ahead
		} else {
			res = reserve(ctx)
		}
		waited = 0
		return take(ctx, res)
	}
	ready = func(ctx context.Context) error {
		for retakes := 0; retakes < maxRetakes && time.Since(at) > a.d.Pacer.Slack(); retakes++ {
			if err := take(ctx, reserve(ctx)); err != nil {
				return err
			}
		}
		a.d.Metrics.ProxyWait(waited)
		return nil
	}
	return wait, ready
}

func sleepUntil(ctx context.Context, at time.Time) error {
	d := time.Until(at)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// forwardError turns what Forward returned into the reply's error. A
// failure of the CRM's is wrapped as ErrCRMUnreachable with its text, not
// its kind: the table's CRM rows word a register's failures.
func (a *API) forwardError(c echo.Context, err error) error {
	var crmErr *crm.Error
	switch {
	case errors.Is(err, ErrQueueFull):
		return err
	case errors.Is(err, crm.ErrBadPath):
		return ErrBadPath
	case errors.As(err, &crmErr):
		a.d.Log.WarnContext(c.Request().Context(), "the shop's CRM did not answer a proxied call",
			"account_id", c.Get("account_id"), "err", crmErr.Error())
		return fmt.Errorf("%w: %s", ErrCRMUnreachable, crmErr.Error())
	}
	return err
}

// capped passes a body on up to its cap, then fails the read (the CRM
// would get a cut request; the caller gets 413). Only announced lengths
// stream, and those are refused before anything is sent when over the
// cap, so it is a second line, not the check.
type capped struct {
	r    io.Reader
	left int64
	over bool
}

var errOverCap = errors.New("serviceapi: body over the cap")

func (b *capped) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the cap from a longer one.
		var one [1]byte
		if n, _ := b.r.Read(one[:]); n > 0 {
			b.over = true
			return 0, errOverCap
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// Running is the one rule for whether the module runs for an account:
// the proxy, this API's token route and the account page's token routes
// (handlers' issueFor) all ask it. It names the state when not. The
// flags, not Status(): a revoked key outranks frozen there, and each state
// must be named for what it is.
func Running(acc store.Account) error {
	switch {
	case !acc.Connected:
		return ErrPending
	case acc.Frozen:
		return ErrFrozen
	case !acc.Active:
		return ErrInactive
	}
	return keyHealthy(acc)
}

// keyHealthy refuses a key the health check found dead (issue 17: each
// such state "makes the proxy answer 409"). scopes_missing included: the
// module needs every scope it asked for, and a caller learns of the
// state here rather than from a 403 of the CRM half-way through its work.
func keyHealthy(acc store.Account) error {
	switch acc.KeyHealth {
	case store.KeyHealthy:
		return nil
	case store.KeyScopesMissing:
		return ErrScopesMissing
	default: // key_revoked, and whatever a later release may add: refused
		return ErrKeyRevoked
	}
}
