// Package serviceclient is for the module's own services (its workers,
// its backend): it reads a connected shop's credentials from the
// service API, gives an *http.Client to call the shop's CRM through the
// service's proxy (the key never leaves the service, the CRM's rate limit
// is kept for every worker at once), and consumes the account event
// stream with a Redis consumer group.
//
// It depends on nothing of the service's own packages: import it from a
// module of your own (examples/worker does).
package serviceclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client calls the service API with one of the service's SERVICE_TOKENs.
// It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the client the service API is called with (its
// Transport is wrapped to add the token). Default: 30 s timeout.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// New returns a client of the service at baseURL (e.g.
// "https://connect.example.com") that authenticates with token.
func New(baseURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("serviceclient: the base URL must be an absolute http(s) URL")
	}
	if token == "" {
		return nil, errors.New("serviceclient: a service token is required")
	}
	c := &Client{base: u, token: token, http: &http.Client{Timeout: 30 * time.Second}}
	for _, o := range opts {
		o(c)
	}
	hc := *c.http // a copy: the caller's client is left alone
	next := hc.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	hc.Transport = &bearer{base: u, token: token, next: next}
	c.http = &hc
	return c, nil
}

// Errors of the service API, by the problem code it answered with.
var (
	ErrNotFound     = errors.New("serviceclient: no such account")
	ErrNotConnected = errors.New("serviceclient: the account is not connected (yet)")
	ErrUnauthorized = errors.New("serviceclient: the service token was refused")
)

// Problem is a failure the service API answered with.
type Problem struct {
	Status  int    `json:"status"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (p *Problem) Error() string {
	return fmt.Sprintf("serviceclient: %d %s: %s", p.Status, p.Code, p.Message)
}

// Is lets errors.Is match the sentinels above.
func (p *Problem) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return p.Status == http.StatusNotFound
	case ErrNotConnected:
		return p.Code == "not_connected"
	case ErrUnauthorized:
		return p.Status == http.StatusUnauthorized
	}
	return false
}

// Credentials are a connected shop's: where its CRM is, its API key, its
// state and the module's connection settings. The service records every
// read on its event stream (credentials.read).
type Credentials struct {
	ID        string            `json:"id"`
	SystemURL string            `json:"systemUrl"`
	APIKey    string            `json:"apiKey"`
	Active    bool              `json:"active"`
	Frozen    bool              `json:"frozen"`
	Settings  map[string]string `json:"settings"`
}

// String never prints the key.
func (c Credentials) String() string {
	return fmt.Sprintf("Credentials{ID:%s SystemURL:%s Active:%t Frozen:%t}", c.ID, c.SystemURL, c.Active, c.Frozen)
}

// Credentials reads the account's credentials. Prefer Proxy: it keeps the
// key inside the service and the CRM's rate limit shared.
func (c *Client) Credentials(ctx context.Context, accountID string) (Credentials, error) {
	var out Credentials
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("accounts", accountID, "credentials"), nil)
	if err != nil {
		return out, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return out, fmt.Errorf("serviceclient: credentials: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return out, fmt.Errorf("serviceclient: credentials: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return out, problemOf(resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return out, fmt.Errorf("serviceclient: credentials: %w", err)
	}
	return out, nil
}

// ProxyBase is the base URL of the account's CRM proxy: point a RetailCRM
// API client at it (with an empty API key: the service adds the shop's),
// with the http.Client of HTTPClient.
func (c *Client) ProxyBase(accountID string) string {
	return c.url("accounts", accountID, "crm")
}

// HTTPClient is an *http.Client that adds the service token to requests
// for the service's own address, and only those: a redirect elsewhere
// never carries it.
func (c *Client) HTTPClient() *http.Client { return c.http }

// Proxy returns both: the account's proxy base URL and the client.
func (c *Client) Proxy(accountID string) (string, *http.Client) {
	return c.ProxyBase(accountID), c.http
}

// Transport wraps next (nil: http.DefaultTransport) to add the service
// token to requests for the service's address only. For a client library
// that takes no *http.Client: install it as its transport.
func (c *Client) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &bearer{base: c.base, token: c.token, next: next}
}

func (c *Client) url(parts ...string) string {
	u := *c.base
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/service/api/" + strings.Join(parts, "/")
	u.RawPath = ""
	return u.String()
}

func problemOf(status int, body []byte) error {
	var p struct {
		Error Problem `json:"error"`
	}
	if json.Unmarshal(body, &p) != nil || p.Error.Status == 0 {
		return &Problem{Status: status, Code: "unexpected", Message: http.StatusText(status)}
	}
	return &p.Error
}

// bearer adds the token to requests for base's scheme and host only.
type bearer struct {
	base  *url.URL
	token string
	next  http.RoundTripper
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != b.base.Scheme || r.URL.Host != b.base.Host {
		return b.next.RoundTrip(r)
	}
	r = r.Clone(r.Context()) // a RoundTripper must not change the caller's request
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}
