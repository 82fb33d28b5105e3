package handlers_test

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/store"
)

const exampleSettings = "../settings.example.json"

// signedIn connects a shop, opens its account page like the CRM does, and
// returns the account, the session cookie and the page's CSRF token.
func (h *harness) signedIn(apiKey string) (store.Account, *http.Cookie, string) {
	h.t.Helper()
	acc := h.connected(apiKey)
	_, cookie := h.login(acc.ClientID.Reveal())
	require.NotNil(h.t, cookie)
	resp, body := h.get("/account", cookie)
	require.Equal(h.t, http.StatusOK, resp.StatusCode)
	csrf := between(body, `name="csrf" value="`, `"`)
	require.NotEmpty(h.t, csrf)
	h.rememberForLogs(csrf)
	return acc, cookie, csrf
}

// refusedSettings posts a settings form the service refuses: it keeps the
// form as a draft and sends the browser back to the account page (303),
// which shows it with its problems; this returns that page.
func (h *harness) refusedSettings(path string, form url.Values, cookie *http.Cookie) (*http.Response, string) {
	h.t.Helper()
	resp, body := h.postForm(path, form, cookie)
	require.Equal(h.t, http.StatusSeeOther, resp.StatusCode, "a refused form goes back to the page; body: %s", body)
	to := resp.Header.Get("Location")
	require.True(h.t, strings.HasPrefix(to, "/account"), "to the account page, not %q", to)
	resp, body = h.get(to, cookie)
	require.Equal(h.t, http.StatusOK, resp.StatusCode)
	return resp, body
}

// goodSettings is a valid form for settings.example.json.
func goodSettings(csrf, token string) url.Values {
	return url.Values{
		"csrf": {csrf}, "setting-account_id": {"4567"}, "setting-api_token": {token},
		"setting-environment": {"sandbox"}, "setting-sync_stock": {"on"},
	}
}

const testToken = "tok_handler_0123456789"

func TestAccountPageWithoutASettingsFileHasNoForm(t *testing.T) {
	h := newHarness(t, nil)
	_, cookie, csrf := h.signedIn("key-nosettings")
	resp, body := h.get("/account", cookie)
	require.Equal(t, http.StatusOK, resp.StatusCode, "the account page itself, or the check below proves nothing")
	assert.NotContains(t, body, `id="settings-form"`)
	resp, _ = h.postForm("/account/settings", url.Values{"csrf": {csrf}}, cookie)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestSettingsAreSavedAndSecretsNeverComeBack(t *testing.T) {
	h := newHarness(t, nil, withSettingsFile(exampleSettings))
	h.remember(testToken)
	acc, cookie, csrf := h.signedIn("key-settings")

	_, body := h.get("/account", cookie)
	assert.Contains(t, body, `id="settings-form"`)
	assert.Contains(t, body, `<option value="production" selected>`, "defaults before anything is saved")
	assert.Contains(t, body, `id="setting-sync_stock" name="setting-sync_stock" checked`)

	resp, _ := h.postForm("/account/settings", goodSettings(csrf, "  "+testToken+"  "), cookie)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "/account?done=saved", resp.Header.Get("Location"))
	got, err := h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"account_id": "4567", "api_token": testToken, "environment": "sandbox", "sync_stock": "true"}, got.Settings)

	_, body = h.get("/account?done=saved", cookie) // h.get fails the test if the token is in the body
	assert.Contains(t, body, "Settings saved.")
	assert.Contains(t, body, `value="4567"`)
	assert.Contains(t, body, `id="setting-api_token-saved"`, "the secret is shown as saved, masked")
	assert.Contains(t, body, `aria-describedby="setting-api_token-help setting-api_token-saved"`)

	// Left empty, the secret is kept; the rest is replaced.
	form := goodSettings(csrf, "")
	form.Set("setting-account_id", "999")
	form.Del("setting-sync_stock")
	resp, _ = h.postForm("/account/settings", form, cookie)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	got, err = h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"account_id": "999", "api_token": testToken, "environment": "sandbox", "sync_stock": "false"}, got.Settings)

	// The value is sealed at rest: no Redis value holds it in clear.
	for _, k := range h.mr.Keys() {
		if h.mr.Type(k) == "hash" {
			fields, err := h.mr.HKeys(k)
			require.NoError(t, err)
			for _, f := range fields {
				assert.NotContains(t, h.mr.HGet(k, f), testToken, "%s %s", k, f)
			}
		}
	}
}

func TestRefusedSettingsShowErrorsNextToFieldsAndKeepInput(t *testing.T) {
	h := newHarness(t, nil, withSettingsFile(exampleSettings))
	h.remember(testToken)
	acc, cookie, csrf := h.signedIn("key-refused")

	form := goodSettings(csrf, testToken)
	form.Set("setting-account_id", "12ab")
	form.Set("setting-environment", "staging") // not an option
	_, body := h.refusedSettings("/account/settings", form, cookie)

	doc := parseHTML(t, body)
	title := textOf(find(doc, func(n *html.Node) bool { return n.Data == "title" }))
	assert.True(t, strings.HasPrefix(title, "Error: "), "the title says so first: %q", title)

	input := byID(doc, "setting-account_id")
	require.NotNil(t, input)
	assert.Equal(t, "12ab", attr(input, "value"), "input kept")
	assert.Equal(t, "true", attr(input, "aria-invalid"))
	assert.Equal(t, "setting-account_id-help setting-account_id-example setting-account_id-error", attr(input, "aria-describedby"))
	assert.True(t, hasAttr(input, "autofocus"), "the first field to fix takes the focus")
	assert.Equal(t, "Error: Use digits only (3 to 12). For example: 4567", textOf(byID(doc, "setting-account_id-error")), "says what is expected")
	assert.Contains(t, textOf(byID(doc, "setting-environment-error")), "Choose one of the listed options")
	assert.False(t, hasAttr(byID(doc, "setting-environment"), "autofocus"), "only one autofocus")
	assert.Contains(t, body, `<a href="#setting-account_id">Account number: Use digits only (3 to 12). For example: 4567</a>`, "the summary links to the field")
	assert.Contains(t, body, `<input type="checkbox" id="setting-sync_stock" name="setting-sync_stock" checked`, "a ticked box stays ticked")
	assert.Equal(t, "", attr(byID(doc, "setting-api_token"), "value"), "a typed secret is never sent back")
	assert.NotNil(t, byID(doc, "setting-api_token-kept"), "and the owner is told it was kept (account_drafts_test.go)")

	got, err := h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Empty(t, got.Settings, "nothing saved")

	// A required secret with nothing saved is required.
	form = goodSettings(csrf, "")
	_, body = h.refusedSettings("/account/settings", form, cookie)
	assert.Contains(t, textOf(byID(parseHTML(t, body), "setting-api_token-error")), "Fill in this field")
}

// Each refused value says what is expected, in the owner's language: the
// schema's message, else the field type's or a digits-only pattern's own
// wording (an alternation of counts too), and the example.
func TestRefusedValuesSayWhatIsExpected(t *testing.T) {
	schema := filepath.Join(t.TempDir(), "settings.json")
	require.NoError(t, os.WriteFile(schema, []byte(`{"fields":[
		{"name":"inn","type":"text","required":true,"pattern":"[0-9]{10}|[0-9]{12}","label":"INN","example":"7707083893"},
		{"name":"bik","type":"text","pattern":"[0-9]{8}|[0-9]{9}|[0-9]{11}","label":"BIK"},
		{"name":"phone","type":"text","pattern":"7[0-9]{10}","label":"Phone",
		 "message":{"en":"11 digits starting with 7.","ru":"11 цифр, первая — 7.","es":"11 dígitos, empezando por 7."}},
		{"name":"pin","type":"text","pattern":"[0-9]{4}","label":"PIN"},
		{"name":"code","type":"text","pattern":"[A-Z]{3}","label":"Code","message":"Three capital letters.","example":{"en":"ABC","es":"XYZ"}},
		{"name":"plan","type":"select","required":true,"label":"Plan","options":[{"value":"a","label":"A"},{"value":"b","label":"B"}]},
		{"name":"terms","type":"checkbox","required":true,"label":"Terms"}]}`), 0o600))
	h := newHarness(t, nil, withSettingsFile(schema))
	_, cookie, csrf := h.signedIn("key-wording")
	form := url.Values{"csrf": {csrf}, "setting-inn": {"12345"}, "setting-bik": {"1"}, "setting-phone": {"81234567890"},
		"setting-pin": {"12a"}, "setting-code": {"abc"}}

	cases := []struct {
		lang string
		want map[string]string
	}{
		{"en", map[string]string{
			"inn": "Use digits only (exactly 10 or 12). For example: 7707083893", "bik": "Use digits only (exactly 8, 9 or 11).",
			"phone": "11 digits starting with 7.", "pin": "Use digits only (exactly 4).",
			"code": "Three capital letters. For example: ABC", "plan": "Choose one of the listed options.",
			"terms": "Tick this box: it is required.",
		}},
		{"ru", map[string]string{
			"inn": "Используйте только цифры (ровно 10 или 12). Например: 7707083893", "bik": "Используйте только цифры (ровно 8, 9 или 11).",
			"phone": "11 цифр, первая — 7.", "pin": "Используйте только цифры (ровно 4).",
			"code": "Three capital letters. Например: ABC", "terms": "Отметьте этот пункт: он обязателен.",
		}},
		{"es", map[string]string{
			"inn": "Use solo dígitos (exactamente 10 o 12). Por ejemplo: 7707083893", "bik": "Use solo dígitos (exactamente 8, 9 u 11).",
			"code": "Three capital letters. Por ejemplo: XYZ", "pin": "Use solo dígitos (exactamente 4).",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.lang, func(t *testing.T) {
			_, body := h.refusedSettings("/account/settings?lang="+tc.lang, form, cookie)
			doc := parseHTML(t, body)
			for name, want := range tc.want {
				assert.Equal(t, want, visibleText(byID(doc, "setting-"+name+"-error")), name)
			}
			assert.NotContains(t, body, "expected format", "no field is left with the vague wording")
		})
	}

	_, body := h.get("/account?lang=en", cookie)
	doc := parseHTML(t, body)
	assert.Equal(t, "For example: 7707083893", textOf(byID(doc, "setting-inn-example")), "the example is help before any error")
	assert.Contains(t, attr(byID(doc, "setting-inn"), "aria-describedby"), "setting-inn-example")
	for _, name := range []string{"inn", "bik", "phone", "pin"} {
		assert.Equal(t, "numeric", attr(byID(doc, "setting-"+name), "inputmode"), "%s takes digits only: a numeric keyboard", name)
	}
	assert.False(t, hasAttr(byID(doc, "setting-code"), "inputmode"))
}

// orList's Spanish "u": before a count whose name starts with an o sound.
func TestSpanishSaysUBeforeAnOSound(t *testing.T) {
	schema := filepath.Join(t.TempDir(), "settings.json")
	require.NoError(t, os.WriteFile(schema, []byte(`{"fields":[
		{"name":"a","type":"text","pattern":"[0-9]{6}|[0-9]{8}","label":"A"},
		{"name":"b","type":"text","pattern":"[0-9]{9}|[0-9]{80}","label":"B"},
		{"name":"c","type":"text","pattern":"[0-9]{7}|[0-9]{9}","label":"C"}]}`), 0o600))
	h := newHarness(t, nil, withSettingsFile(schema))
	_, cookie, csrf := h.signedIn("key-wording-es")
	_, body := h.refusedSettings("/account/settings?lang=es", url.Values{"csrf": {csrf}, "setting-a": {"x"}, "setting-b": {"x"}, "setting-c": {"x"}}, cookie)
	doc := parseHTML(t, body)
	assert.Equal(t, "Use solo dígitos (exactamente 6 u 8).", visibleText(byID(doc, "setting-a-error")))
	assert.Equal(t, "Use solo dígitos (exactamente 9 u 80).", visibleText(byID(doc, "setting-b-error")))
	assert.Equal(t, "Use solo dígitos (exactamente 7 o 9).", visibleText(byID(doc, "setting-c-error")))
}

func TestSecretInputsAreNewPasswordsAndASavedOneIsNotRequiredAgain(t *testing.T) {
	h := newHarness(t, nil, withSettingsFile(exampleSettings))
	h.remember(testToken)
	_, cookie, csrf := h.signedIn("key-secret-input")
	requiredMark := func(doc *html.Node, id string) bool {
		label := find(doc, func(n *html.Node) bool { return n.Data == "label" && attr(n, "for") == id })
		require.NotNil(t, label)
		return find(label, func(n *html.Node) bool { return attr(n, "class") == "required" }) != nil
	}

	_, body := h.get("/account", cookie)
	doc := parseHTML(t, body)
	token := byID(doc, "setting-api_token")
	assert.Equal(t, "new-password", attr(token, "autocomplete"), "browsers offer no saved password for a module's token")
	assert.True(t, requiredMark(doc, "setting-api_token"), "nothing saved yet: required")
	assert.True(t, hasAttr(token, "required"))

	resp, _ := h.postForm("/account/settings", goodSettings(csrf, testToken), cookie)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	_, body = h.get("/account", cookie)
	doc = parseHTML(t, body)
	assert.False(t, requiredMark(doc, "setting-api_token"), "saved: leaving it empty is fine, so it does not say required")
	assert.False(t, hasAttr(byID(doc, "setting-api_token"), "required"))
	assert.True(t, requiredMark(doc, "setting-account_id"), "other required fields still say so")
}

func TestSettingsNeedTheSessionAndItsCSRFToken(t *testing.T) {
	h := newHarness(t, nil, withSettingsFile(exampleSettings))
	h.remember(testToken)
	acc, cookie, csrf := h.signedIn("key-csrf")

	for name, form := range map[string]url.Values{
		"wrong token": goodSettings("forged", testToken),
		"no token":    goodSettings("", testToken),
	} {
		t.Run(name, func(t *testing.T) {
			resp, body := h.postForm("/account/settings", form, cookie)
			assert.Equal(t, http.StatusForbidden, resp.StatusCode)
			assert.Contains(t, body, "This form has expired")
		})
	}
	resp, body := h.postForm("/account/settings", goodSettings(csrf, testToken))
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "no session")
	assert.Contains(t, body, "Open the module again from your CRM")

	got, err := h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Empty(t, got.Settings, "nothing saved by any of these")
}

func TestDisconnectAsksThenSwitchesTheModuleOffInTheCRM(t *testing.T) {
	h := newHarness(t, nil, withSettingsFile(exampleSettings))
	acc, cookie, csrf := h.signedIn("key-disconnect")
	edits := len(h.fake.Edits())

	resp, body := h.get("/account/disconnect", cookie)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, `id="disconnect-confirm"`)
	assert.Contains(t, body, `name="csrf" value="`+csrf+`"`)
	assert.Len(t, h.fake.Edits(), edits, "asking changes nothing")

	resp, _ = h.postForm("/account/disconnect", url.Values{"csrf": {"forged"}}, cookie)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Len(t, h.fake.Edits(), edits, "a forged form reaches no CRM")

	resp, _ = h.postForm("/account/disconnect", url.Values{"csrf": {csrf}}, cookie)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "/account?done=disconnected", resp.Header.Get("Location"))
	all := h.fake.Edits()
	require.Len(t, all, edits+1)
	assert.Equal(t, false, all[len(all)-1].Module["active"])
	got, err := h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Equal(t, store.StatusInactive, got.Status())

	_, body = h.get("/account?done=disconnected", cookie)
	assert.Contains(t, body, "The module is switched off in your CRM.")
	assert.NotContains(t, body, `id="disconnect-start"`)
	resp, _ = h.get("/account/disconnect", cookie)
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode, "nothing to confirm any more")
}

func TestDisconnectRefusedByTheCRMChangesNothing(t *testing.T) {
	cases := []struct {
		name   string
		reply  crmtest.Reply
		status int
		want   string
	}{
		{"key revoked", crmtest.Status(401), http.StatusBadGateway, "Your CRM refused the change"},
		{"no access", crmtest.Status(403), http.StatusBadGateway, "Your CRM refused the change"},
		{"CRM down", crmtest.Status(503), http.StatusServiceUnavailable, "Your CRM is not answering right now"},
		{"validation", crmtest.Status(400), http.StatusBadGateway, "Your CRM said: "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const key = "key-refused-disconnect"
			h := newHarness(t, []crmtest.Option{crmtest.Edit(key, crmtest.OK(), tc.reply)})
			acc, cookie, csrf := h.signedIn(key)

			resp, body := h.postForm("/account/disconnect", url.Values{"csrf": {csrf}}, cookie)
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Contains(t, body, "The module was not switched off and nothing was changed.")
			assert.Contains(t, body, tc.want)
			assert.Contains(t, body, `role="alert"`)
			got, err := h.store.Get(t.Context(), acc.ID)
			require.NoError(t, err)
			assert.Equal(t, store.StatusActive, got.Status(), "still active here, as in the CRM")
			assert.Contains(t, body, `id="disconnect-start"`, "and the owner can try again")
		})
	}
}

func TestPagesSpeakTheBrowsersLanguage(t *testing.T) {
	h := newHarness(t, nil, withSettingsFile(exampleSettings))
	_, cookie, _ := h.signedIn("key-lang")
	get := func(path, acceptLanguage string, cookies ...*http.Cookie) (*http.Response, string) {
		req, err := http.NewRequest(http.MethodGet, h.srv.URL+path, nil)
		require.NoError(t, err)
		if acceptLanguage != "" {
			req.Header.Set("Accept-Language", acceptLanguage)
		}
		for _, c := range cookies {
			req.AddCookie(c)
		}
		return h.do(req)
	}
	cases := []struct {
		name, path, accept string
		cookies            []*http.Cookie
		lang, text         string
	}{
		{"no header", "/account", "", nil, "en", "Connected since"},
		{"Russian", "/account", "ru-RU,ru;q=0.9,en;q=0.5", nil, "ru", "Подключён"},
		{"Latin-American Spanish", "/account", "es-419", nil, "es", "Conectado desde"},
		{"unoffered", "/account", "de-DE", nil, "en", "Connected since"},
		{"switcher beats the header", "/account?lang=es", "ru", nil, "es", "Número de cuenta"},
		{"cookie beats the header", "/account", "ru", []*http.Cookie{{Name: "lang", Value: "es"}}, "es", "Ajustes"},
		{"unknown ?lang is ignored", "/account?lang=xx", "ru", nil, "ru", "Настройки"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(tc.path, tc.accept, append([]*http.Cookie{cookie}, tc.cookies...)...)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Contains(t, body, `<html lang="`+tc.lang+`">`)
			assert.Contains(t, body, tc.text)
			assert.Contains(t, resp.Header.Values("Vary"), "Accept-Language, Cookie")
		})
	}

	resp, _ := get("/account?lang=ru", "", cookie)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var langCookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "lang" {
			langCookie = c
		}
	}
	require.NotNil(t, langCookie, "the switcher remembers the choice")
	assert.Equal(t, "ru", langCookie.Value)
	assert.True(t, langCookie.HttpOnly)

	// The session-ended page too.
	resp, body := get("/account", "ru")
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Contains(t, body, `<html lang="ru">`)
	assert.Contains(t, body, "снова откройте модуль из вашей CRM")
	assert.Contains(t, body, "«Demo module»", "names the module to look for")
}

// Accessibility and CSP, checked on the markup of every page state.
func TestPagesAreAccessibleAndNeedNoInlineCode(t *testing.T) {
	h := newHarness(t, []crmtest.Option{crmtest.Edit("key-a11y-refused", crmtest.OK(), crmtest.Status(403))}, withSettingsFile(exampleSettings))
	h.remember(testToken)
	_, cookie, csrf := h.signedIn("key-a11y")
	// Each state is checked to be the one meant (its status) before its
	// markup is: a redirect or an error page would make the checks below
	// pass on the wrong page.
	pages := map[string]string{}
	page := func(name string, status int, resp *http.Response, body string) {
		t.Helper()
		require.Equal(t, status, resp.StatusCode, "%s: status; body: %s", name, body)
		pages[name] = body
	}
	resp, body := h.get("/account", cookie)
	page("account", http.StatusOK, resp, body)
	bad := goodSettings(csrf, testToken)
	bad.Set("setting-account_id", "x")
	bad.Set("setting-environment", "")
	resp, body = h.refusedSettings("/account/settings", bad, cookie) // the token kept
	page("refused settings", http.StatusOK, resp, body)
	resp, body = h.get("/account", cookie)
	page("refused settings, reloaded", http.StatusOK, resp, body)
	bad.Set("setting-api_token", "bad token")
	resp, body = h.refusedSettings("/account/settings", bad, cookie) // the token not kept
	page("refused secret", http.StatusOK, resp, body)
	stale := goodSettings("stale", testToken)
	stale.Set("account", between(pages["account"], `name="account" value="`, `"`))
	resp, _ = h.postFormFrom("/account/settings", stale, map[string]string{"Sec-Fetch-Site": "same-origin"}, cookie)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "the stale form is kept")
	resp, body = h.get("/account", cookie)
	page("expired form, back", http.StatusOK, resp, body)
	resp, body = h.postForm("/account/logout", url.Values{"csrf": {"stale"}}, cookie)
	page("expired form", http.StatusForbidden, resp, body)
	resp, body = h.get("/nowhere", cookie)
	page("not found", http.StatusNotFound, resp, body)
	resp, body = h.postForm("/account/settings", goodSettings(csrf, testToken), cookie)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "the good settings are saved; body: %s", body)
	resp, body = h.get("/account?done=saved", cookie)
	page("saved", http.StatusOK, resp, body)
	require.Contains(t, body, "Settings saved.")
	resp, body = h.get("/account/disconnect", cookie)
	page("confirm", http.StatusOK, resp, body)
	resp, body = h.get("/account")
	page("expired", http.StatusUnauthorized, resp, body)
	resp, body = h.postForm("/account", url.Values{"clientId": {"nope"}})
	page("unknown client", http.StatusNotFound, resp, body)

	_, refusedCookie, refusedCSRF := h.signedIn("key-a11y-refused")
	resp, body = h.postForm("/account/disconnect", url.Values{"csrf": {refusedCSRF}}, refusedCookie)
	page("CRM refused", http.StatusBadGateway, resp, body)

	for name, body := range pages {
		t.Run(name, func(t *testing.T) {
			doc := parseHTML(t, body)
			root := find(doc, func(n *html.Node) bool { return n.Data == "html" })
			require.NotNil(t, root)
			assert.NotEmpty(t, attr(root, "lang"), "html lang")
			assert.NotEmpty(t, textOf(find(doc, func(n *html.Node) bool { return n.Data == "title" })), "a title")
			assert.NotNil(t, find(doc, func(n *html.Node) bool { return n.Data == "h1" }), "a heading")
			assert.NotNil(t, find(doc, func(n *html.Node) bool { return n.Data == "nav" && attr(n, "aria-label") != "" }), "a labelled language switcher")

			ids := map[string]bool{}
			walk(doc, func(n *html.Node) {
				if id := attr(n, "id"); id != "" {
					assert.False(t, ids[id], "id %q is unique", id)
					ids[id] = true
				}
			})
			walk(doc, func(n *html.Node) {
				if n.Type == html.ElementNode && n.Data == "script" { // CSP script-src 'self': files only, and the page works without them
					assert.Equal(t, "/static/time.js", attr(n, "src"), "the one script is the time zone file")
					assert.Nil(t, n.FirstChild, "no inline code")
				}
				assert.False(t, hasAttr(n, "style"), "no style attribute on <%s>: CSP style-src 'self' blocks it", n.Data)
				for _, a := range n.Attr {
					assert.False(t, strings.HasPrefix(a.Key, "on"), "no inline handler %s", a.Key)
				}
				if n.Type != html.ElementNode {
					return
				}
				if n.Data == "select" || n.Data == "textarea" || (n.Data == "input" && attr(n, "type") != "hidden" && attr(n, "type") != "submit") {
					id := attr(n, "id")
					require.NotEmpty(t, id, "a form control has an id")
					assert.NotNil(t, find(doc, func(l *html.Node) bool { return l.Data == "label" && attr(l, "for") == id }), "control %s has a label", id)
				}
				for _, ref := range strings.Fields(attr(n, "aria-describedby") + " " + attr(n, "aria-labelledby")) {
					assert.True(t, ids[ref], "aria reference %q exists", ref)
				}
				if n.Data == "form" && attr(n, "method") == "post" {
					csrf := find(n, func(i *html.Node) bool { return i.Data == "input" && attr(i, "name") == "csrf" })
					if assert.NotNil(t, csrf, "every state-changing form carries the CSRF token") {
						assert.NotEmpty(t, attr(csrf, "value"))
					}
				}
				if n.Data == "img" {
					assert.True(t, hasAttr(n, "alt"), "images have alt")
				}
				if n.Data == "button" || n.Data == "a" {
					assert.NotEmpty(t, strings.TrimSpace(textOf(n)), "<%s> has a name", n.Data)
				}
			})
		})
	}
}

// visibleText is textOf without what only screen readers get (the
// "Error:" before a field's problem).
func visibleText(n *html.Node) string {
	if n == nil {
		return ""
	}
	var b strings.Builder
	var visit func(*html.Node)
	visit = func(n *html.Node) {
		if n.Type == html.ElementNode && attr(n, "class") == "visually-hidden" {
			return
		}
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			visit(c)
		}
	}
	visit(n)
	return strings.Join(strings.Fields(b.String()), " ")
}

func parseHTML(t *testing.T, body string) *html.Node {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(body))
	require.NoError(t, err)
	return doc
}

func walk(n *html.Node, fn func(*html.Node)) {
	fn(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, fn)
	}
}

func find(n *html.Node, match func(*html.Node) bool) *html.Node {
	if n.Type == html.ElementNode && match(n) {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if f := find(c, match); f != nil {
			return f
		}
	}
	return nil
}

func byID(doc *html.Node, id string) *html.Node {
	return find(doc, func(n *html.Node) bool { return attr(n, "id") == id })
}

func attr(n *html.Node, key string) string {
	if n == nil {
		return ""
	}
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasAttr(n *html.Node, key string) bool {
	if n == nil {
		return false
	}
	for _, a := range n.Attr {
		if a.Key == key {
			return true
		}
	}
	return false
}

func textOf(n *html.Node) string {
	if n == nil {
		return ""
	}
	var b strings.Builder
	walk(n, func(c *html.Node) {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	})
	return strings.Join(strings.Fields(b.String()), " ")
}
