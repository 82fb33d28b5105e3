package handlers_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/tokens"
)

const appURL = "https://app.module.test/embedded"

func (h *harness) verifier() *tokens.Verifier {
	return &tokens.Verifier{JWKSURL: h.srv.URL + "/.well-known/jwks.json", Issuer: h.cfg.PublicURL, Audience: h.cfg.ModuleCode}
}

func TestTheJWKSPublishesTheSigningKeysOnly(t *testing.T) {
	h := newHarness(t, nil, withTokenKey(tokens.NewSeed()))
	resp, body := h.get("/.well-known/jwks.json")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Cache-Control"), "max-age=")
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &set))
	require.Len(t, set.Keys, 1)
	k := set.Keys[0]
	assert.Equal(t, "OKP", k["kty"])
	assert.Equal(t, "Ed25519", k["crv"])
	assert.Equal(t, "EdDSA", k["alg"])
	assert.Equal(t, "sig", k["use"])
	assert.NotEmpty(t, k["kid"])
	assert.NotContains(t, k, "d", "never the private part")

	off := newHarness(t, nil)
	resp, _ = off.get("/.well-known/jwks.json")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "tokens are off without TOKEN_SIGNING_KEY")
}

func TestThePagesTokenNeedsTheSessionAndItsCSRFToken(t *testing.T) {
	h := newHarness(t, nil, withTokenKey(tokens.NewSeed()))
	acc, cookie, csrf := h.signedIn("key-token")

	resp, _ := h.postForm("/account/token", url.Values{"csrf": {csrf}})
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "no session")
	resp, _ = h.postForm("/account/token", url.Values{"csrf": {"forged"}}, cookie)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "a wrong CSRF token")

	resp, body := h.postForm("/account/token", url.Values{"csrf": {csrf}}, cookie)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Contains(t, resp.Header.Get("Cache-Control"), "no-store")
	var tok tokens.Token
	require.NoError(t, json.Unmarshal([]byte(body), &tok))
	h.remember(tok.Token)
	claims, err := h.verifier().Verify(t.Context(), tok.Token)
	require.NoError(t, err)
	assert.Equal(t, acc.ID, claims.AccountID())
	assert.Equal(t, acc.SystemURL, claims.SystemURL)

	req, err := http.NewRequest(http.MethodPost, h.srv.URL+"/account/token", nil)
	require.NoError(t, err)
	req.AddCookie(cookie)
	req.Header.Set("X-CSRF-Token", csrf)
	resp, body = h.do(req)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "a script may send the CSRF token as a header: %s", body)
	require.NoError(t, json.Unmarshal([]byte(body), &tok))
	h.remember(tok.Token)
}

// The page asks the service API's rule (serviceapi.Running): a dead key
// gets no token, as a switched-off module does not.
func TestNoTokenForAModuleThatIsNotRunning(t *testing.T) {
	h := newHarness(t, nil, withTokenKey(tokens.NewSeed()))
	acc, cookie, csrf := h.signedIn("key-token-off")
	for _, health := range []store.KeyHealth{store.KeyRevoked, store.KeyScopesMissing} {
		_, _, err := h.store.SetKeyHealth(t.Context(), acc.ID, acc.KeySeq, health, nil)
		require.NoError(t, err)
		resp, body := h.postForm("/account/token", url.Values{"csrf": {csrf}}, cookie)
		assert.Equal(t, http.StatusConflict, resp.StatusCode, "%s: %s", health, body)
	}
	_, _, err := h.store.SetKeyHealth(t.Context(), acc.ID, acc.KeySeq, store.KeyHealthy, nil)
	require.NoError(t, err)
	_, err = h.store.SetActivity(t.Context(), acc.ID, store.State{}, store.Lease{})
	require.NoError(t, err)
	resp, body := h.postForm("/account/token", url.Values{"csrf": {csrf}}, cookie)
	assert.Equal(t, http.StatusConflict, resp.StatusCode, body)
}

func TestOpenSendsTheOwnerToTheAppWithTheTokenInTheFragmentOnly(t *testing.T) {
	h := newHarness(t, nil, withTokenKey(tokens.NewSeed()), withAppURL(appURL))
	acc, cookie, csrf := h.signedIn("key-open")
	_, page := h.get("/account", cookie)
	assert.Contains(t, page, `action="/account/open"`, "the page offers Open")
	assert.Contains(t, page, "Open Demo module")

	resp, _ := h.postForm("/account/open", url.Values{"csrf": {"forged"}}, cookie)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = h.postForm("/account/open", url.Values{"csrf": {csrf}}, cookie)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	loc := resp.Header.Get("Location")
	app, fragment, ok := strings.Cut(loc, "#")
	require.True(t, ok, "a fragment")
	assert.Equal(t, appURL, app, "nothing in the path or query: servers never see the token")
	token := strings.TrimPrefix(fragment, "token=")
	h.remember(token)
	claims, err := h.verifier().Verify(t.Context(), token)
	require.NoError(t, err)
	assert.Equal(t, acc.ID, claims.AccountID())
	assert.NotContains(t, h.logs.String(), token, "never logged")

	plain := newHarness(t, nil, withTokenKey(tokens.NewSeed()))
	_, cookie2, _ := plain.signedIn("key-open-none")
	_, page = plain.get("/account", cookie2)
	assert.NotContains(t, page, `action="/account/open"`, "no MODULE_APP_URL: no button")
}

// A page offering "Open <module>" lets its forms go to the app's origin as
// well as our own: the button's 303 leads there, and a browser checks a
// form's redirects against form-action. Only the origin is added (no path,
// no query), nothing else in the policy changes, and pages without the
// button keep form-action 'self'.
func TestOnlyThePageOfferingOpenLetsItsFormGoToTheAppsOrigin(t *testing.T) {
	const app = "https://app.module.test:8443/embedded/ui?from=crm"
	h := newHarness(t, nil, withTokenKey(tokens.NewSeed()), withAppURL(app), withSettingsFile(exampleSettings))
	acc, cookie, csrf := h.signedIn("key-open-csp")

	resp, _ := h.get("/nowhere")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	base := resp.Header.Get("Content-Security-Policy")
	require.Equal(t, 1, strings.Count(base, "form-action 'self';"), base)
	withApp := strings.Replace(base, "form-action 'self';", "form-action 'self' https://app.module.test:8443;", 1)

	resp, page := h.get("/account", cookie)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, page, `id="open-app"`)
	assert.Equal(t, withApp, resp.Header.Get("Content-Security-Policy"), "the page with the button")

	form := goodSettings(csrf, testToken)
	form.Set("setting-account_id", "12ab")
	resp, page = h.refusedSettings("/account/settings", form, cookie)
	require.Contains(t, page, `id="open-app"`)
	assert.Equal(t, withApp, resp.Header.Get("Content-Security-Policy"), "a refused form still offers Open")

	resp, page = h.get("/account/disconnect", cookie)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotContains(t, page, `id="open-app"`)
	assert.Equal(t, base, resp.Header.Get("Content-Security-Policy"), "the confirmation has no button")

	_, err := h.store.SetActivity(t.Context(), acc.ID, store.State{}, store.Lease{}) // switched off: no button
	require.NoError(t, err)
	resp, page = h.get("/account", cookie)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotContains(t, page, `id="open-app"`)
	assert.Equal(t, base, resp.Header.Get("Content-Security-Policy"), "a page without the button")

	plain := newHarness(t, nil, withTokenKey(tokens.NewSeed()))
	_, cookie2, _ := plain.signedIn("key-open-csp-none")
	resp, _ = plain.get("/account", cookie2)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, base, resp.Header.Get("Content-Security-Policy"), "no MODULE_APP_URL: unchanged")
}
