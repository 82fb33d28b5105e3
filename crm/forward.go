package crm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modulehub/simpleconnect/redact"
)

// ErrBadPath means a path given to Forward is not one of the CRM's API
// paths in plain form (CleanAPIPath); nothing was sent.
var ErrBadPath = errors.New("crm: not a CRM API path")

// CleanAPIPath checks a path as a caller sent it (escaped, without the
// leading slash) and returns it decoded. Only a path that already is its
// own clean form and starts with "api/" passes: no "." or ".." segment, no
// empty segment (so no "//host"), no backslash, no percent-encoded slash,
// backslash, dot or percent (a second decoding could make any of them
// real), no control character, no scheme. Whatever the CRM's web server
// or a proxy in front of it would do with such a path, it never reaches
// it: nothing else than the shop's API is ours to call with its key.
func CleanAPIPath(raw string) (string, error) {
	lower := strings.ToLower(raw)
	for _, bad := range []string{"%2f", "%5c", "%2e", "%25", "\\"} {
		if strings.Contains(lower, bad) {
			return "", ErrBadPath
		}
	}
	decoded, err := url.PathUnescape(raw)
	if err != nil {
		return "", ErrBadPath
	}
	if !strings.HasPrefix(decoded, "api/") {
		return "", ErrBadPath
	}
	for _, seg := range strings.Split(decoded, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", ErrBadPath
		}
	}
	for _, r := range decoded {
		if r < 0x20 || r == 0x7f {
			return "", ErrBadPath
		}
	}
	return decoded, nil
}

// ForwardRequest is one call of a module's service to its shop's CRM API
// (the service API's proxy).
type ForwardRequest struct {
	Method string
	// Path is the CRM API path as the caller sent it, escaped, without the
	// leading slash ("api/v5/orders"); Forward checks it with CleanAPIPath.
	Path     string
	RawQuery string
	// Header is the caller's; Forward sends only what ForwardHeader keeps.
	Header        http.Header
	Body          io.Reader // nil: no body
	ContentLength int64     // -1: unknown
	// Wait, when set, is called before every attempt, retries included:
	// the attempt's turn under the shop's rate limit. Ready, when set, is
	// called once the attempt has its connection, just before the request
	// is written: the last moment to check the turn was not missed (a new
	// connection's dial and TLS handshake take time). An error of either
	// ends the call, nothing of the attempt written.
	Wait  func(ctx context.Context) error
	Ready func(ctx context.Context) error
}

// hopHeaders are the hop-by-hop headers (RFC 9110 §7.6.1 and the
// customary ones): they describe the caller's connection to us, not ours
// to the CRM.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// droppedHeaders are the caller's headers that never reach the CRM: its
// credentials for us (the CRM gets the shop's key instead), cookies,
// where it came from, and what the transport decides itself (length,
// compression: Go's transport asks for gzip and decodes it, so the
// content passed back is what the Content-Type says).
var droppedHeaders = []string{
	"Authorization", "Cookie", "X-Api-Key", "Host", "Content-Length", "Accept-Encoding", "Expect",
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip",
}

// ForwardHeader is what the CRM gets of the caller's header: everything
// but hop-by-hop headers (also those the caller's Connection names), its
// credentials, cookies and addresses, plus the shop's key.
func ForwardHeader(in http.Header, apiKey redact.Secret) http.Header {
	out := in.Clone()
	if out == nil {
		out = http.Header{}
	}
	for _, v := range in.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			out.Del(strings.TrimSpace(name))
		}
	}
	for _, h := range hopHeaders {
		out.Del(h)
	}
	for _, h := range droppedHeaders {
		out.Del(h)
	}
	out.Set("X-API-KEY", apiKey.Reveal())
	return out
}

// idempotent methods may be sent again after a 429 or 503; a retry needs
// the body again, and a streamed one is gone, so only bodiless calls are.
func retriable(r ForwardRequest) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return r.Body == nil || r.ContentLength == 0
	}
	return false
}

// Forward sends r to the shop's CRM at systemURL with the shop's key, over
// the same guarded transport as every other CRM call (the dial-time
// address guard, no proxy, no redirect followed, timeouts), and returns
// the CRM's reply for the caller to stream; the caller closes its body.
// An idempotent call answered 429 or 503 is tried again (Retries times at
// most) after the CRM's Retry-After or a jittered backoff, within
// Options.Timeout. A reply is an error only when none came: *Error of kind
// ErrUnavailable (or ErrBlocked when the guard refused the address).
func (c *Client) Forward(ctx context.Context, systemURL string, apiKey redact.Secret, r ForwardRequest) (*http.Response, error) {
	path, err := CleanAPIPath(r.Path)
	if err != nil {
		return nil, err
	}
	target, err := url.Parse(systemURL)
	if err != nil || target.Host == "" {
		return nil, fmt.Errorf("crm forward: bad system URL: %w", ErrBlocked)
	}
	target.Path, target.RawPath = "/"+path, "/"+r.Path
	target.RawQuery = r.RawQuery
	header := ForwardHeader(r.Header, apiKey)

	// The deadline covers the attempts, their backoffs and their waits for
	// a turn; a turn is at most the limiter's bounded wait away.
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout+waitAllowance)
	ctx = context.WithValue(ctx, opKey{}, &call{op: "proxy"})
	retries := 0
	if retriable(r) {
		retries = c.opts.Retries
	}
	for attempt := 0; ; attempt++ {
		if r.Wait != nil {
			if err := r.Wait(ctx); err != nil {
				cancel()
				return nil, err
			}
		}
		actx, turn := c.turnHook(ctx, r.Ready)
		req, err := http.NewRequestWithContext(actx, r.Method, target.String(), r.Body)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("crm forward: %w", err)
		}
		req.Header = header
		req.ContentLength = r.ContentLength
		if r.Body == nil {
			req.ContentLength = 0
		}
		resp, err := c.transport.RoundTrip(req)
		if werr := turn.err(); werr != nil {
			if resp != nil {
				_ = resp.Body.Close()
			}
			cancel()
			return nil, werr
		}
		if err != nil {
			cancel()
			kind := ErrUnavailable
			if isGuardRefusal(err) {
				kind = ErrBlocked
			}
			// Logs carry no query (the caller's filters may name people):
			// should the error quote the URL, only the host stays.
			msg := strings.ReplaceAll(err.Error(), target.String(), target.Scheme+"://"+target.Host+"/…")
			return nil, &Error{Kind: kind, Op: "proxy", Transport: clean(msg, apiKey.Reveal())}
		}
		retry := attempt < retries && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable)
		if !retry {
			resp.Body = cancelOnClose{resp.Body, cancel} // the body streams after Forward returns: its end ends the context
			return resp, nil
		}
		wait := c.backoff(attempt, resp.Header.Get("Retry-After"))
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
		_ = resp.Body.Close()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			cancel()
			return nil, &Error{Kind: ErrUnavailable, Op: "proxy", Status: resp.StatusCode, Transport: "deadline reached while backing off"}
		case <-t.C:
		}
	}
}

// waitAllowance is added to Options.Timeout for a proxied call: the time
// its turns under the shop's rate limit may take (the service bounds a
// wait at 5 s).
const waitAllowance = 5 * time.Second

// turn is one attempt's last check of its turn, run by the transport once
// it has a connection: its error cancels the attempt before anything is
// written.
type turn struct {
	mu     sync.Mutex
	failed error
}

func (t *turn) err() error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

// turnHook returns the attempt's context: with ready set, an httptrace
// hook on GotConn (called in the caller's goroutine before the request is
// written, for HTTP/1 and HTTP/2 alike) runs it, and cancels the attempt
// when it fails.
func (c *Client) turnHook(ctx context.Context, wait func(context.Context) error) (context.Context, *turn) {
	if wait == nil {
		return ctx, nil
	}
	actx, cancel := context.WithCancel(ctx)
	t := &turn{}
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if err := wait(actx); err != nil {
			t.mu.Lock()
			t.failed = err
			t.mu.Unlock()
			cancel()
			// Cancelling alone does not stop an HTTP/1 request: the
			// transport hands it to the connection's writer right after
			// this hook, without looking at the context again. Closing the
			// connection does (the write fails; the connection was not
			// going back to the pool anyway). An HTTP/2 connection is
			// shared by other calls and checks the context before it
			// writes a request's headers.
			if tc, ok := info.Conn.(*tls.Conn); !ok || tc.ConnectionState().NegotiatedProtocol != "h2" {
				_ = info.Conn.Close()
			}
		}
	}}
	// The attempt's cancel is not called on success: it ends with ctx (the
	// call's, cancelled when the reply is closed).
	_ = cancel
	return httptrace.WithClientTrace(actx, trace), t
}

// backoff is the wait before retry attempt+1: the CRM's Retry-After in
// seconds when it gave one (at most RetryMaxWait), else a jittered
// doubling from RetryWait.
func (c *Client) backoff(attempt int, retryAfter string) time.Duration {
	if s, err := strconv.Atoi(retryAfter); err == nil && s > 0 {
		return min(time.Duration(s)*time.Second, c.opts.RetryMaxWait)
	}
	d := min(c.opts.RetryWait<<attempt, c.opts.RetryMaxWait)
	return d/2 + rand.N(d/2+1)
}
