package handlers_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAccountLoginSetsASessionAndRedirects(t *testing.T) {
	h := newHarness(t, nil)
	acc := h.connected("key-login")

	resp, cookie := h.login(acc.ClientID.Reveal())
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "/account", resp.Header.Get("Location"))
	require.NotNil(t, cookie, "a session cookie")
	assert.True(t, cookie.HttpOnly)
	assert.Equal(t, http.SameSiteLaxMode, cookie.SameSite)
	assert.False(t, cookie.Secure, "PUBLIC_URL is http here")
	assert.Equal(t, "/", cookie.Path)
	assert.NotContains(t, cookie.Value, acc.ClientID.Reveal())
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))

	page, body := h.get("/account", cookie)
	require.Equal(t, http.StatusOK, page.StatusCode)
	assert.Contains(t, body, h.fake.URL, "the page shows the shop's address")
	assert.Contains(t, body, `status-active`, "and the connection state")
	assert.Contains(t, body, "Demo module")
	assert.Contains(t, page.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
	assert.Contains(t, body, `<script src="/static/time.js" defer></script>`, "scripts come from files only")
	assert.Equal(t, 1, strings.Count(body, "<script"), "and there is no other")
}

func TestAccountCookieIsSecureBehindHTTPS(t *testing.T) {
	h := newHarness(t, nil, withPublicURL("https://module.test"))
	acc := h.connected("key-secure")
	_, cookie := h.login(acc.ClientID.Reveal())
	require.NotNil(t, cookie)
	assert.True(t, cookie.Secure)
	assert.Equal(t, "__Host-session", cookie.Name)
}

func TestAccountUnknownClientIDShowsAFriendlyPageAndNoCookie(t *testing.T) {
	h := newHarness(t, nil)
	for name, clientID := range map[string]string{
		"unknown": "this-client-id-was-never-issued-by-us-000000",
		"empty":   "",
		"huge":    strings.Repeat("x", 1000),
	} {
		t.Run(name, func(t *testing.T) {
			resp, body := h.postForm("/account", url.Values{"clientId": {clientID}})
			assert.Equal(t, http.StatusNotFound, resp.StatusCode)
			assert.Empty(t, resp.Cookies(), "no cookie for an unknown clientId")
			assert.Contains(t, body, "Connect the module again from the CRM marketplace.")
			assert.Contains(t, resp.Header.Get("Content-Type"), "text/html")
		})
	}
}

func TestAccountPageWithoutSessionSaysHowToComeBack(t *testing.T) {
	h := newHarness(t, nil)
	resp, body := h.get("/account")
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Contains(t, body, "Open the module again from your CRM")

	resp, _ = h.get("/account", &http.Cookie{Name: "session", Value: "forged-session-id"})
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func TestAccountLoginRotatesTheSession(t *testing.T) {
	h := newHarness(t, nil)
	acc := h.connected("key-rotate")
	_, first := h.login(acc.ClientID.Reveal())
	require.NotNil(t, first)
	_, second := h.login(acc.ClientID.Reveal(), first)
	require.NotNil(t, second)
	assert.NotEqual(t, first.Value, second.Value)

	resp, _ := h.get("/account", first)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the old session ended at sign-in")
	resp, _ = h.get("/account", second)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestAccountLogoutNeedsTheCSRFToken(t *testing.T) {
	h := newHarness(t, nil)
	acc := h.connected("key-logout")
	_, cookie := h.login(acc.ClientID.Reveal())
	require.NotNil(t, cookie)

	resp, _ := h.postForm("/account/logout", url.Values{"csrf": {"wrong"}}, cookie)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = h.get("/account", cookie)
	require.Equal(t, http.StatusOK, resp.StatusCode, "a forged logout changes nothing")

	_, body := h.get("/account", cookie)
	csrf := between(body, `name="csrf" value="`, `"`)
	require.NotEmpty(t, csrf)
	h.remember(csrf)
	resp, _ = h.postForm("/account/logout", url.Values{"csrf": {csrf}}, cookie)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = h.get("/account", cookie)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func between(s, start, end string) string {
	i := strings.Index(s, start)
	if i < 0 {
		return ""
	}
	s = s[i+len(start):]
	j := strings.Index(s, end)
	if j < 0 {
		return ""
	}
	return s[:j]
}
