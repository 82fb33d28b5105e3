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

	"github.com/modulehub/simpleconnect/handlers"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/settings"
	"github.com/modulehub/simpleconnect/store"
)

// The tokens of these tests: each must never reach a page or a log line.
const (
	oldToken = "tok_old_saved_0123456789"
	newToken = "tok_new_typed_9876543210"
)

// savedWith signs in and saves valid settings with oldToken.
func (h *harness) savedWith(apiKey string) (store.Account, *http.Cookie, string) {
	h.t.Helper()
	h.remember(oldToken, newToken)
	acc, cookie, csrf := h.signedIn(apiKey)
	resp, _ := h.postForm("/account/settings", goodSettings(csrf, oldToken), cookie)
	require.Equal(h.t, http.StatusSeeOther, resp.StatusCode)
	return acc, cookie, csrf
}

func (h *harness) savedToken(id string) string {
	h.t.Helper()
	got, err := h.store.Get(h.t.Context(), id)
	require.NoError(h.t, err)
	return got.Settings["api_token"]
}

// A new token refused only because another field was wrong is kept for the
// retry, and the page says so; the retry with the field left empty saves
// the new token, not the old one (issue 14: "Settings saved." used to
// follow, with the old token still saved).
func TestANewSecretRefusedForAnotherFieldIsKeptForTheRetry(t *testing.T) {
	h := newHarness(t, nil, withSettingsFile(exampleSettings))
	acc, cookie, csrf := h.savedWith("key-kept")

	form := goodSettings(csrf, newToken)
	form.Set("setting-account_id", "12ab")
	resp, body := h.refusedSettings("/account/settings", form, cookie) // h.do fails the test if newToken is in the body
	doc := parseHTML(t, body)
	assert.Equal(t, "The new value you typed is kept, hidden, for up to 15 minutes: leave the field empty to save it, or type another one.",
		textOf(byID(doc, "setting-api_token-kept")), "the field says plainly that the new value was kept")
	assert.Nil(t, byID(doc, "setting-api_token-saved"), "not the old line that says leaving it empty keeps the saved value")
	assert.Contains(t, attr(byID(doc, "setting-api_token"), "aria-describedby"), "setting-api_token-kept")
	assert.Nil(t, byID(doc, "setting-api_token-error"), "the token itself was fine")
	assert.Equal(t, []string{"#setting-account_id"}, summaryLinks(doc), "only the field to fix is listed")
	assert.Equal(t, oldToken, h.savedToken(acc.ID), "nothing saved")
	for _, k := range h.mr.Keys() {
		if h.mr.Type(k) == "string" {
			v, err := h.mr.Get(k)
			require.NoError(t, err)
			assert.NotContains(t, v, newToken, "kept sealed: %s", k)
		}
	}

	// A language switch (a GET) shows the same form, in Russian.
	_, body = h.get("/account?lang=ru", cookie)
	doc = parseHTML(t, body)
	assert.Equal(t, "12ab", attr(byID(doc, "setting-account_id"), "value"), "what was typed survives the switch")
	assert.Contains(t, textOf(byID(doc, "setting-api_token-kept")), "запомнено")
	assert.Contains(t, textOf(byID(doc, "setting-account_id-error")), "Используйте только цифры")
	assert.NotContains(t, body, "Настройки сохранены", "not saved, and not said to be")

	// The retry: the field fixed, the token left empty.
	form = goodSettings(csrf, "")
	form.Set("kept-api_token", "1")
	resp, _ = h.postForm("/account/settings", form, cookie)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, newToken, h.savedToken(acc.ID), "the new token was saved, not the old one")
	_, body = h.get("/account?done=saved&lang=en", cookie)
	doc = parseHTML(t, body)
	assert.Contains(t, body, "Settings saved.")
	assert.Nil(t, byID(doc, "setting-api_token-kept"), "the draft is spent")
	assert.NotNil(t, byID(doc, "setting-api_token-saved"))
	assert.Nil(t, byID(doc, "settings-discard"), "nothing left to discard")
}

// A kept token that expired before the retry is never dropped silently:
// the save is refused and the field asks for the token again.
func TestAKeptSecretThatExpiredIsAskedForAgain(t *testing.T) {
	h := newHarness(t, nil, withSettingsFile(exampleSettings))
	acc, cookie, csrf := h.savedWith("key-kept-expired")
	form := goodSettings(csrf, newToken)
	form.Set("setting-account_id", "12ab")
	h.refusedSettings("/account/settings", form, cookie)

	h.mr.FastForward(16 * time.Minute) // the draft's 15 minutes; the session has an hour

	form = goodSettings(csrf, "")
	form.Set("kept-api_token", "1")
	_, body := h.refusedSettings("/account/settings", form, cookie)
	doc := parseHTML(t, body)
	assert.Equal(t, "The new value you typed earlier is no longer kept: type it again.", visibleText(byID(doc, "setting-api_token-error")))
	assert.Equal(t, []string{"#setting-api_token"}, summaryLinks(doc))
	assert.NotContains(t, body, "Settings saved.")
	assert.Equal(t, oldToken, h.savedToken(acc.ID))
}

// A token refused by its own check is not kept, and the field says so
// next to the problem.
func TestASecretRefusedItselfIsNotKept(t *testing.T) {
	h := newHarness(t, nil, withSettingsFile(exampleSettings))
	const bad = "short!" // fails the token's pattern
	h.remember(bad)
	acc, cookie, csrf := h.savedWith("key-dropped")

	resp, body := h.refusedSettings("/account/settings", goodSettings(csrf, bad), cookie)
	doc := parseHTML(t, body)
	assert.Equal(t, "What you typed here was not kept: type it again, or leave the field empty to keep the saved value.",
		strings.TrimPrefix(textOf(byID(doc, "setting-api_token-dropped")), "⚠ "))
	assert.NotEmpty(t, textOf(byID(doc, "setting-api_token-error")))
	assert.Nil(t, byID(doc, "setting-api_token-kept"))
	assert.Nil(t, find(doc, func(n *html.Node) bool { return attr(n, "name") == "kept-api_token" }), "no kept mark")
	assert.Equal(t, oldToken, h.savedToken(acc.ID))

	// Leaving it empty now keeps the saved token, as the page said.
	resp, _ = h.postForm("/account/settings", goodSettings(csrf, ""), cookie)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, oldToken, h.savedToken(acc.ID))
}

// failingDrafts is the store, except that no draft can be kept.
type failingDrafts struct{ *store.Redis }

func (failingDrafts) SaveDraft(context.Context, redact.Secret, store.Draft, time.Duration) error {
	return errors.New("draft store down")
}

// When the draft cannot be kept, the page says the token was not kept:
// never that it was.
func TestASecretThatCouldNotBeKeptIsSaidToBeLost(t *testing.T) {
	h := newHarness(t, nil, withSettingsFile(exampleSettings))
	_, cookie, csrf := h.savedWith("key-no-draft")
	schema, err := settings.Load(exampleSettings)
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{ReplaceAttr: redact.ReplaceAttr}))
	h.srv = httptest.NewServer(handlers.New(handlers.Deps{ // the same store and session, drafts failing
		Config: h.cfg, Log: log, Accounts: h.store, Sessions: failingDrafts{h.store}, Store: h.store, Settings: schema,
	}))
	t.Cleanup(h.srv.Close)
	form := goodSettings(csrf, newToken)
	form.Set("setting-account_id", "12ab")
	// Without a draft the form comes back in the reply itself.
	resp, body := h.postForm("/account/settings", form, cookie)
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
	doc := parseHTML(t, body)
	assert.Nil(t, byID(doc, "setting-api_token-kept"))
	assert.Contains(t, textOf(byID(doc, "setting-api_token-dropped")), "What you typed here was not kept")
	assert.Equal(t, []string{"#setting-account_id", "#setting-api_token"}, summaryLinks(doc), "and the summary lists it")
	assert.Contains(t, h.logs.String(), "settings draft not kept")
}

// "Discard changes" drops the draft: the page shows what is saved.
func TestDiscardingAFormThatWasNotSaved(t *testing.T) {
	h := newHarness(t, nil, withSettingsFile(exampleSettings))
	_, cookie, csrf := h.savedWith("key-discard")
	form := goodSettings(csrf, newToken)
	form.Set("setting-account_id", "12ab")
	h.postForm("/account/settings", form, cookie)
	_, body := h.get("/account", cookie)
	require.NotNil(t, byID(parseHTML(t, body), "settings-discard"), "a draft can be discarded")

	resp, _ := h.postForm("/account/settings/discard", url.Values{"csrf": {"stale"}}, cookie)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = h.postForm("/account/settings/discard", url.Values{"csrf": {csrf}}, cookie)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "/account#settings", resp.Header.Get("Location"))
	_, body = h.get("/account", cookie)
	doc := parseHTML(t, body)
	assert.Equal(t, "4567", attr(byID(doc, "setting-account_id"), "value"), "the saved value again")
	assert.Nil(t, byID(doc, "error-summary-title"))
	assert.NotNil(t, byID(doc, "setting-api_token-saved"))
}

// A draft belongs to its session: opening the module again from the CRM
// starts without it.
func TestADraftEndsWithItsSession(t *testing.T) {
	h := newHarness(t, nil, withSettingsFile(exampleSettings))
	acc, cookie, csrf := h.savedWith("key-draft-session")
	form := goodSettings(csrf, newToken)
	form.Set("setting-account_id", "12ab")
	h.postForm("/account/settings", form, cookie)

	_, next := h.login(acc.ClientID.Reveal(), cookie)
	require.NotNil(t, next)
	_, body := h.get("/account", next)
	doc := parseHTML(t, body)
	assert.Equal(t, "4567", attr(byID(doc, "setting-account_id"), "value"))
	assert.Nil(t, byID(doc, "setting-api_token-kept"))
}

// summaryLinks are the error summary's links, in order.
func summaryLinks(doc *html.Node) []string {
	var out []string
	walk(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "a" && strings.HasPrefix(attr(n, "href"), "#setting-") {
			out = append(out, attr(n, "href"))
		}
	})
	return out
}
