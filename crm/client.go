package crm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"code.dny.dev/ssrf"
	"github.com/go-resty/resty/v2"

	"github.com/modulehub/simpleconnect/redact"
)

// Module is the integration module as the CRM's edit method takes it.
type Module struct {
	Code            string
	IntegrationCode string
	Active          bool
	Freeze          bool
	Name            string
	Logo            string
	ClientID        redact.Secret
	BaseURL         string
	AccountURL      string
	Actions         map[string]string // e.g. "activity": "/activity", relative to BaseURL
}

// wireModule is Module as JSON; only this type sees the clientId in clear.
type wireModule struct {
	Code            string            `json:"code"`
	IntegrationCode string            `json:"integrationCode"`
	Active          bool              `json:"active"`
	Freeze          bool              `json:"freeze,omitempty"` // sent only to freeze; the CRM unfreezes itself
	Name            string            `json:"name"`
	Logo            string            `json:"logo,omitempty"`
	ClientID        string            `json:"clientId"`
	BaseURL         string            `json:"baseUrl"`
	AccountURL      string            `json:"accountUrl"`
	Actions         map[string]string `json:"actions,omitempty"`
}

// EncodeModule returns the integrationModule form value for m.
func EncodeModule(m Module) (string, error) {
	b, err := json.Marshal(wireModule{
		Code: m.Code, IntegrationCode: m.IntegrationCode, Active: m.Active, Freeze: m.Freeze,
		Name: m.Name, Logo: m.Logo, ClientID: m.ClientID.Reveal(), BaseURL: m.BaseURL,
		AccountURL: m.AccountURL, Actions: m.Actions,
	})
	return string(b), err
}

// Credentials is what GET /api/credentials says about an API key.
type Credentials struct {
	Scopes         []string `json:"scopes"`
	Credentials    []string `json:"credentials"`
	SiteAccess     string   `json:"siteAccess"`
	SitesAvailable []string `json:"sitesAvailable"`
}

// Attempt describes one HTTP exchange with a CRM, for metrics.
type Attempt struct {
	Op       string // "edit", "credentials"
	Status   int    // 0 when no reply came
	Err      error  // transport error, if any
	Retry    bool   // a retry of an earlier attempt of the same call
	Duration time.Duration
}

// Options configure a Client.
type Options struct {
	// Timeout bounds one call including its retries.
	Timeout time.Duration
	// Retries is how many times a retryable failure is tried again.
	Retries int
	// RetryWait is the first backoff; it doubles up to RetryMaxWait.
	RetryWait    time.Duration
	RetryMaxWait time.Duration
	// AllowInsecure turns the outbound guard off (development and tests:
	// http and loopback CRMs).
	AllowInsecure bool
	// AllowedPorts are ports besides 443 the guard lets through.
	AllowedPorts []uint16
	// GuardOptions adjust the guard (tests allow a loopback prefix).
	GuardOptions []ssrf.Option
	// Resolver, when set, resolves CRM host names (tests).
	Resolver *net.Resolver
	// OnAttempt, when set, is called after every HTTP exchange.
	OnAttempt func(Attempt)
	// UserAgent is sent with every call.
	UserAgent string
}

func (o *Options) defaults() {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Retries < 0 {
		o.Retries = 0
	} else if o.Retries == 0 {
		o.Retries = 3
	}
	if o.RetryWait <= 0 {
		o.RetryWait = 200 * time.Millisecond
	}
	if o.RetryMaxWait <= 0 {
		o.RetryMaxWait = 2 * time.Second
	}
	if o.UserAgent == "" {
		o.UserAgent = "simpleconnect"
	}
}

// Client calls shops' CRMs. It is safe for concurrent use.
type Client struct {
	opts Options
	http *resty.Client
	// transport is the guarded transport resty uses, for Forward.
	transport http.RoundTripper
}

// New returns a Client whose every connection goes through the outbound
// guard unless AllowInsecure is set.
func New(o Options) *Client {
	o.defaults()
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second, Resolver: o.Resolver}
	if !o.AllowInsecure {
		ports := append([]uint16{443}, o.AllowedPorts...)
		dialer.Control = ssrf.New(append([]ssrf.Option{ssrf.WithPorts(ports...)}, o.GuardOptions...)...).Safe
	}
	base := &http.Transport{
		Proxy:                 nil, // a proxy would make the guard check the proxy, not the CRM
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   32, // the CRM proxy sends one shop many calls at once; each connection is reused
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: o.Timeout,
	}
	var transport http.RoundTripper = base
	if o.OnAttempt != nil {
		transport = observed{next: base, report: o.OnAttempt}
	}
	guarded := transport // Forward's: a proxied call keeps its own deadlines
	// Each attempt gets at most half the budget, so a hung first attempt
	// leaves room for a second one within Timeout.
	transport = attemptTimeout{next: transport, limit: o.Timeout / 2}
	rc := resty.New().
		SetTransport(transport).
		SetCookieJar(nil). // an API client keeps no cookies (resty's default jar would, for every shop's CRM)
		SetRedirectPolicy(resty.NoRedirectPolicy()).
		SetResponseBodyLimit(1<<20).
		SetHeader("User-Agent", o.UserAgent).
		SetHeader("Accept", "application/json").
		SetRetryCount(o.Retries).
		SetRetryWaitTime(o.RetryWait).
		SetRetryMaxWaitTime(o.RetryMaxWait).
		SetRetryAfter(retryAfter).
		AddRetryCondition(shouldRetry)
	rc.SetLogger(discardLogger{}) // resty's own warnings could quote request details
	return &Client{opts: o, http: rc, transport: guarded}
}

// shouldRetry retries rate limits, server errors and timeouts; never a
// 4xx, never a dial the guard refused.
func shouldRetry(r *resty.Response, err error) bool {
	if err != nil {
		if errors.Is(err, context.Canceled) || isGuardRefusal(err) {
			return false
		}
		return isTimeout(err) || isConnError(err)
	}
	return retryableStatus(r.StatusCode())
}

// retryableStatus is a rate limit or a server error: worth another try.
func retryableStatus(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// retryAfter honours a Retry-After in seconds from a 429/503; zero lets
// resty use its jittered backoff.
func retryAfter(_ *resty.Client, r *resty.Response) (time.Duration, error) {
	if r == nil {
		return 0, nil
	}
	if s, err := strconv.Atoi(r.Header().Get("Retry-After")); err == nil && s > 0 {
		return time.Duration(s) * time.Second, nil
	}
	return 0, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isConnError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

func isGuardRefusal(err error) bool {
	return errors.Is(err, ssrf.ErrProhibitedIP) || errors.Is(err, ssrf.ErrProhibitedPort) ||
		errors.Is(err, ssrf.ErrProhibitedNetwork) || errors.Is(err, ssrf.ErrInvalidHostPort)
}

// EditModule registers or updates the module in the shop's CRM:
// POST {systemURL}/api/v5/integration-modules/{code}/edit.
func (c *Client) EditModule(ctx context.Context, systemURL string, apiKey redact.Secret, m Module) (Info, error) {
	payload, err := EncodeModule(m)
	if err != nil {
		return Info{}, fmt.Errorf("crm edit: encode module: %w", err)
	}
	var out editReply
	endpoint := systemURL + "/api/v5/integration-modules/" + url.PathEscape(m.Code) + "/edit"
	err = c.do(ctx, "edit", apiKey, &out, func(r *resty.Request) (*resty.Response, error) {
		return r.SetFormData(map[string]string{"integrationModule": payload}).Post(endpoint)
	})
	return out.Info, err
}

// FetchCredentials asks the CRM what apiKey may do:
// GET {systemURL}/api/credentials.
func (c *Client) FetchCredentials(ctx context.Context, systemURL string, apiKey redact.Secret) (Credentials, error) {
	var out struct {
		reply
		Credentials
	}
	err := c.do(ctx, "credentials", apiKey, &out, func(r *resty.Request) (*resty.Response, error) {
		return r.Get(systemURL + "/api/credentials")
	})
	return out.Credentials, err
}

// enveloped is any decoded reply: it exposes its envelope.
type enveloped interface{ envelope() *reply }

func (r *reply) envelope() *reply { return r }

// do runs one call with the overall deadline, then classifies the reply.
func (c *Client) do(ctx context.Context, op string, apiKey redact.Secret, out enveloped, send func(*resty.Request) (*resty.Response, error)) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()

	ctx = context.WithValue(ctx, opKey{}, &call{op: op})
	req := c.http.R().SetContext(ctx).SetHeader("X-API-KEY", apiKey.Reveal())
	resp, err := send(req)
	if err != nil {
		return c.transportError(op, err, apiKey)
	}
	return classify(op, resp.StatusCode(), resp.Body(), out, apiKey.Reveal())
}

// classify decodes a CRM reply into out and decides what it means: nil for
// success, else an *Error of the right kind with the CRM's explanation.
func classify(op string, status int, body []byte, out enveloped, apiKey string) error {
	// An HTML page means "no CRM account here", except with a rate-limit or
	// server-error status: a front proxy answers 502/503/429 with its own
	// HTML page while the account exists, and that must stay retryable news.
	if isHTML(body) && !retryableStatus(status) {
		return &Error{Kind: ErrNoAccount, Op: op, Status: status}
	}
	decodeErr := json.Unmarshal(body, out)
	env := out.envelope()
	success := status >= 200 && status < 300 && decodeErr == nil && env.Success != nil && *env.Success
	if success {
		return nil
	}
	kind := kindOf(status)
	if status >= 200 && status < 300 {
		kind = ErrUnexpected // 2xx without success:true
	}
	e := &Error{Kind: kind, Op: op, Status: status}
	if decodeErr == nil {
		e.Message = clean(env.ErrorMsg, apiKey)
		for _, d := range env.Errors {
			e.Details = append(e.Details, clean(d, apiKey))
		}
	}
	return e
}

func (c *Client) transportError(op string, err error, apiKey redact.Secret) error {
	kind := ErrUnavailable
	switch {
	case isGuardRefusal(err):
		kind = ErrBlocked
	case errors.Is(err, resty.ErrResponseBodyTooLarge):
		kind = ErrUnexpected
	case errors.Is(err, resty.ErrAutoRedirectDisabled):
		kind = ErrNoAccount // a CRM API never redirects; a web site does
	}
	// url.Error quotes the URL (no secret in it: the key travels in a
	// header); scrub anyway in case a caller put one there.
	return &Error{Kind: kind, Op: op, Transport: clean(err.Error(), apiKey.Reveal())}
}

type opKey struct{}

// call is one logical CRM call; its attempts are counted to tell retries.
type call struct {
	op       string
	attempts atomic.Int32
}

// observed reports every attempt (retries included) to OnAttempt.
type observed struct {
	next   http.RoundTripper
	report func(Attempt)
}

func (o observed) RoundTrip(r *http.Request) (*http.Response, error) {
	var (
		op    string
		retry bool
	)
	if c, ok := r.Context().Value(opKey{}).(*call); ok {
		op, retry = c.op, c.attempts.Add(1) > 1
	}
	start := time.Now()
	resp, err := o.next.RoundTrip(r)
	a := Attempt{Op: op, Err: err, Retry: retry, Duration: time.Since(start)}
	if resp != nil {
		a.Status = resp.StatusCode
	}
	o.report(a)
	return resp, err
}

// attemptTimeout bounds one attempt, its reply's body included, as
// http.Client.Timeout (resty's SetTimeout) would. That one is not used: for
// any RoundTripper but a bare *http.Transport (ours is wrapped, to be
// observed), net/http enforces it with a timer and a goroutine of its own
// per request; a context deadline costs one timer (BENCHMARKS.md). Its
// expiry is a timeout (net.Error), retried as before.
type attemptTimeout struct {
	next  http.RoundTripper
	limit time.Duration
}

func (a attemptTimeout) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(r.Context(), a.limit)
	resp, err := a.next.RoundTrip(r.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose ends a context (an attempt's deadline, a forwarded call)
// once the reply's body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// discardLogger silences resty: its warnings could quote request details.
type discardLogger struct{}

func (discardLogger) Errorf(string, ...interface{}) {}
func (discardLogger) Warnf(string, ...interface{})  {}
func (discardLogger) Debugf(string, ...interface{}) {}
