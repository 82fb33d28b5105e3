package handlers_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/store"
)

// postFormFrom posts a form with the headers a browser adds (Origin,
// Sec-Fetch-Site).
func (h *harness) postFormFrom(path string, form url.Values, headers map[string]string, cookies ...*http.Cookie) (*http.Response, string) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+path, strings.NewReader(form.Encode()))
	require.NoError(h.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	return h.do(req)
}

// staleSettings is the settings form of a page loaded before the module
// was opened again in another tab: the old CSRF token, the account's id.
func staleSettings(acc store.Account, oldCSRF string) url.Values {
	form := goodSettings(oldCSRF, newToken)
	form.Set("account", acc.ID)
	form.Set("setting-account_id", "999")
	form.Del("setting-sync_stock")
	return form
}

// The settings form of a page loaded before the module was opened again
// (another tab: a new session in the same browser) does not dead-end: the
// browser goes back to the account page, which shows what was typed (but
// the secret) with a note to check and save, in the owner's language, and
// a reload shows it again.
func TestAnExpiredSettingsFormComesBackFilledIn(t *testing.T) {
	h := newHarness(t, nil, withSettingsFile(exampleSettings))
	acc, first, oldCSRF := h.savedWith("key-stale")
	_, second := h.login(acc.ClientID.Reveal(), first) // the module opened again from the CRM
	require.NotNil(t, second)

	resp, _ := h.postFormFrom("/account/settings", staleSettings(acc, oldCSRF),
		map[string]string{"Sec-Fetch-Site": "same-origin", "Accept-Language": "es"}, second)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "/account#settings", resp.Header.Get("Location"))
	got, err := h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"account_id": "4567", "api_token": oldToken, "environment": "sandbox", "sync_stock": "true"},
		got.Settings, "nothing saved from a stale form")

	for _, load := range []string{"first load", "reload"} {
		t.Run(load, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, h.srv.URL+"/account", nil)
			require.NoError(t, err)
			req.Header.Set("Accept-Language", "es")
			req.AddCookie(second)
			resp, body := h.do(req)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			doc := parseHTML(t, body)
			assert.Equal(t, "El formulario había caducado, así que no se guardó nada. Lo que escribió aparece abajo: revíselo y guarde de nuevo.",
				textOf(byID(doc, "error-summary-title")), "in the owner's language")
			assert.Equal(t, "999", attr(byID(doc, "setting-account_id"), "value"), "what was typed")
			assert.False(t, hasAttr(byID(doc, "setting-sync_stock"), "checked"), "an unticked box stays unticked")
			assert.Contains(t, textOf(byID(doc, "setting-api_token-dropped")), "Lo que escribió aquí no se ha conservado", "the token must be typed again")
			assert.Equal(t, []string{"#setting-api_token"}, summaryLinks(doc))
			assert.Nil(t, byID(doc, "setting-account_id-error"), "not checked yet: the owner checks and saves")
		})
	}

	// Saving from the page that came back works: its token is fresh.
	_, body := h.get("/account", second)
	csrf := between(body, `name="csrf" value="`, `"`)
	h.rememberForLogs(csrf)
	form := staleSettings(acc, csrf)
	form.Set("setting-api_token", "")
	resp, _ = h.postForm("/account/settings", form, second)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	got, err = h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Equal(t, "999", got.Settings["account_id"])
	assert.Equal(t, oldToken, got.Settings["api_token"], "left empty: the saved token, as the page said")
}

// Only a form from one of our own pages, for the same account, is kept; any
// other stale form gets the expired-form page, with a link back and
// nothing filled in.
func TestAStaleFormFromElsewhereIsNotKept(t *testing.T) {
	h := newHarness(t, nil, withSettingsFile(exampleSettings))
	acc, first, oldCSRF := h.savedWith("key-stale-elsewhere")
	_, second := h.login(acc.ClientID.Reveal(), first)
	require.NotNil(t, second)
	other := store.Account{ID: "01J0OTHERSHOPACCOUNT000000"} // a page of another shop's account, open in the same browser

	cases := []struct {
		name    string
		form    url.Values
		headers map[string]string
		kept    bool
	}{
		{"same origin", staleSettings(acc, oldCSRF), map[string]string{"Sec-Fetch-Site": "same-origin"}, true},
		{"Origin naming this host", staleSettings(acc, oldCSRF), map[string]string{"Origin": h.srv.URL}, true},
		{"Origin naming PUBLIC_URL", staleSettings(acc, oldCSRF), map[string]string{"Origin": "http://module.test"}, true},
		{"cross-site", staleSettings(acc, oldCSRF), map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": h.srv.URL}, false},
		{"another site's Origin", staleSettings(acc, oldCSRF), map[string]string{"Origin": "https://evil.example"}, false},
		{"no Origin at all", staleSettings(acc, oldCSRF), nil, false},
		{"another shop's page", staleSettings(other, oldCSRF), map[string]string{"Sec-Fetch-Site": "same-origin"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			discard(t, h, second)
			resp, body := h.postFormFrom("/account/settings", tc.form, tc.headers, second)
			_, page := h.get("/account", second)
			if tc.kept {
				assert.Equal(t, http.StatusSeeOther, resp.StatusCode)
				assert.Contains(t, page, `value="999"`)
				return
			}
			require.Equal(t, http.StatusForbidden, resp.StatusCode)
			doc := parseHTML(t, body)
			assert.Equal(t, "This form has expired", textOf(byID(doc, "message-title")))
			assert.Equal(t, "/account", attr(byID(doc, "next-step"), "href"), "a link back, not a reload")
			assert.NotContains(t, page, `value="999"`, "nothing filled in")
		})
	}

	resp, _ := h.postFormFrom("/account/settings", staleSettings(acc, oldCSRF), map[string]string{"Sec-Fetch-Site": "same-origin"})
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "no session: the session-ended page, nothing kept anywhere")
}

// discard drops the session's draft through the page, with its own token.
func discard(t *testing.T, h *harness, cookie *http.Cookie) {
	t.Helper()
	_, body := h.get("/account", cookie)
	csrf := between(body, `name="csrf" value="`, `"`)
	h.rememberForLogs(csrf)
	if strings.Contains(body, `id="settings-discard"`) {
		resp, _ := h.postForm("/account/settings/discard", url.Values{"csrf": {csrf}}, cookie)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	}
}
