package handlers_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/handlers"
	"github.com/modulehub/simpleconnect/ratelimit"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/store"
)

// unreadableAccounts is the store, except that an account's record does
// not open (sealed with a key the keyring lost).
type unreadableAccounts struct{ *store.Redis }

func (unreadableAccounts) Get(context.Context, string) (store.Account, error) {
	return store.Account{}, store.ErrUnreadable
}

// overBudget is a client address past its failure budget.
type overBudget struct{}

func (overBudget) Fail(context.Context, string) (ratelimit.Verdict, error) {
	return ratelimit.Verdict{Over: true, RetryAfter: 30 * time.Second}, nil
}

// noAttemptsLeft is a (shop, key) pair past its bound.
type noAttemptsLeft struct{}

func (noAttemptsLeft) Allow(context.Context, string, redact.Secret) (ratelimit.AttemptVerdict, error) {
	return ratelimit.AttemptVerdict{}, nil
}
func (noAttemptsLeft) Ended(context.Context, string, redact.Secret, ratelimit.AttemptVerdict) error {
	return nil
}
func (noAttemptsLeft) InFlight(context.Context, string, redact.Secret) (bool, error) {
	return false, nil
}

// Every error page says which module and what went wrong, in its title
// and heading, and offers one next step: back to the account page, or,
// when there is no page to go back to, what to do in the CRM.
func TestErrorPagesNameTheModuleTheProblemAndTheNextStep(t *testing.T) {
	h := newHarness(t, nil)
	_, cookie, _ := h.signedIn("key-error-pages")
	limited := httptest.NewServer(handlers.New(handlers.Deps{
		Config: h.cfg, Log: slog.New(slog.DiscardHandler), Connector: stubConnector{},
		Accounts: h.store, Sessions: h.store, Store: h.store, Failures: overBudget{}, Attempts: noAttemptsLeft{},
	}))
	defer limited.Close()
	broken := httptest.NewServer(handlers.New(handlers.Deps{ // the same store and sessions; switching off fails on our side
		Config: h.cfg, Log: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{ReplaceAttr: redact.ReplaceAttr})),
		Connector: stubConnector{err: errors.New("dial 10.0.0.3:6379: connection refused")},
		Accounts:  h.store, Sessions: h.store, Store: h.store,
	}))
	defer broken.Close()
	unreadable := httptest.NewServer(handlers.New(handlers.Deps{
		Config: h.cfg, Log: slog.New(slog.DiscardHandler), Connector: stubConnector{},
		Accounts: unreadableAccounts{h.store}, Sessions: h.store, Store: h.store,
	}))
	defer unreadable.Close()
	csrf := func(base string) string {
		resp, body := h.getFrom(base, "/account", cookie)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		return between(body, `name="csrf" value="`, `"`)
	}

	cases := []struct {
		name     string
		send     func() (*http.Response, string)
		status   int
		title    string // <title>; the heading is its first part
		text     string
		nextLink string // href of the next step; empty: a step in words
		nextText string
	}{
		{
			"no such page", func() (*http.Response, string) { return h.get("/nowhere", cookie) },
			404, "Page not found — Demo module", "There is no page at this address.", "/account", "Back to your account page",
		},
		{
			"unknown clientId", func() (*http.Response, string) {
				return h.postForm("/account", url.Values{"clientId": {"never-issued-0000000000000000000000000000"}})
			},
			404, "This shop is not connected — Demo module", "The link from your CRM does not match a shop connected to this module",
			"", "Connect the module again from the CRM marketplace.",
		},
		{
			"stale form", func() (*http.Response, string) {
				return h.postForm("/account/logout", url.Values{"csrf": {"from-an-older-page"}}, cookie)
			},
			403, "This form has expired — Demo module", "Nothing was changed.", "/account", "Back to your account page",
		},
		{
			"too many sign-ins", func() (*http.Response, string) {
				return h.postTo(limited.URL, "/account", url.Values{"clientId": {"x"}})
			},
			429, "Too many requests — Demo module", "Wait a minute, then try again.", "", "Open the module again from your CRM.",
		},
		{
			"too many switch-offs", func() (*http.Response, string) {
				return h.postTo(limited.URL, "/account/disconnect", url.Values{"csrf": {csrf(limited.URL)}}, cookie)
			},
			429, "Too many requests — Demo module", "Wait a minute, then try again.", "/account", "Back to your account page",
		},
		{
			"our own failure", func() (*http.Response, string) {
				return h.postTo(broken.URL, "/account/disconnect", url.Values{"csrf": {csrf(broken.URL)}}, cookie)
			},
			500, "Something went wrong — Demo module", "Something went wrong on our side. Try again in a few minutes.", "/account", "Back to your account page",
		},
		{
			"an account that cannot be read", func() (*http.Response, string) { return h.getFrom(unreadable.URL, "/account", cookie) },
			500, "This did not work — Demo module", "cannot be read", "", "Connect the module again from the CRM marketplace.",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := tc.send()
			require.Equal(t, tc.status, resp.StatusCode)
			doc := parseHTML(t, body)
			assert.Equal(t, tc.title, textOf(find(doc, func(n *html.Node) bool { return n.Data == "title" })))
			assert.Equal(t, tc.title[:len(tc.title)-len(" — Demo module")], textOf(byID(doc, "message-title")), "the heading is the problem")
			assert.Contains(t, textOf(find(doc, func(n *html.Node) bool { return attr(n, "class") == "brand" })), "Demo module", "the module's name above it")
			assert.Contains(t, textOf(byID(doc, "message-text")), tc.text)
			next := byID(doc, "next-step")
			require.NotNil(t, next, "one next step")
			assert.Equal(t, tc.nextText, textOf(next))
			if tc.nextLink != "" {
				assert.Equal(t, "a", next.Data)
				assert.Equal(t, tc.nextLink, attr(next, "href"))
			} else {
				assert.NotEqual(t, "a", next.Data, "no page to go back to: a step in words")
			}
			assert.NotContains(t, body, "10.0.0.3", "never the cause")
		})
	}

	// In the owner's language.
	req, err := http.NewRequest(http.MethodGet, h.srv.URL+"/nowhere", nil)
	require.NoError(t, err)
	req.Header.Set("Accept-Language", "ru")
	_, body := h.do(req)
	doc := parseHTML(t, body)
	assert.Equal(t, "Страница не найдена — Demo module", textOf(find(doc, func(n *html.Node) bool { return n.Data == "title" })))
	assert.Equal(t, "Вернуться на страницу модуля", textOf(byID(doc, "next-step")))
}

// getFrom and postTo are get and postForm against another server over the
// same store (a different limiter or connector).
func (h *harness) getFrom(base, path string, cookies ...*http.Cookie) (*http.Response, string) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	require.NoError(h.t, err)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	return h.do(req)
}

func (h *harness) postTo(base, path string, form url.Values, cookies ...*http.Cookie) (*http.Response, string) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
	require.NoError(h.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range cookies {
		req.AddCookie(c)
	}
	return h.do(req)
}

// Every page names its icon, and /favicon.ico, which browsers ask for
// anyway, is the logo rather than a 404.
func TestTheFaviconIsTheLogo(t *testing.T) {
	h := newHarness(t, nil)
	resp, body := h.get("/favicon.ico")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "image/svg+xml", resp.Header.Get("Content-Type"))
	_, logo := h.get("/static/logo.svg")
	assert.Equal(t, logo, body)
	_, page := h.get("/nowhere")
	assert.Contains(t, page, `<link rel="icon" href="/static/logo.svg">`)

	withLogo := newHarness(t, nil, func(c *config.Config) { c.ModuleLogoURL = "https://cdn.example/logo.png" })
	resp, page = withLogo.get("/favicon.ico")
	assert.Equal(t, http.StatusFound, resp.StatusCode)
	assert.Equal(t, "https://cdn.example/logo.png", resp.Header.Get("Location"), "a configured logo is the icon")
	_, page = withLogo.get("/nowhere")
	assert.Contains(t, page, `<link rel="icon" href="https://cdn.example/logo.png">`)
}
