package handlers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/verify"
)

func TestConfigAnswersScopesAndRegisterURL(t *testing.T) {
	h := newHarness(t, nil)
	resp, body := h.get("/config")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, `{"success":true,"scopes":["integration_read","integration_write"],"registerUrl":"http://module.test/register"}`, body)
}

func TestRegisterConnectsTheShop(t *testing.T) {
	for _, form := range []string{"json-form.txt", "bracket-form.txt"} {
		t.Run(form, func(t *testing.T) {
			h := newHarness(t, nil)
			r := h.registerFixture(form)
			require.True(t, r.Success, r.ErrorMsg)
			assert.Equal(t, "http://module.test/account", r.AccountURL)

			edits := h.fake.Edits()
			require.Len(t, edits, 1)
			assert.Equal(t, "/api/v5/integration-modules/demo/edit", edits[0].Path)
			assert.Equal(t, "recorded-api-key", edits[0].APIKey())
			m := edits[0].Module
			assert.Equal(t, "demo", m["code"])
			assert.Equal(t, "demo", m["integrationCode"])
			assert.Equal(t, "Demo module", m["name"])
			assert.Equal(t, true, m["active"])
			assert.Equal(t, "http://module.test", m["baseUrl"])
			assert.Equal(t, "http://module.test/account", m["accountUrl"])
			assert.Equal(t, "http://module.test/static/logo.svg", m["logo"])
			assert.Equal(t, map[string]any{"activity": "/activity"}, m["actions"])
			clientID, ok := m["clientId"].(string)
			require.True(t, ok, "clientId is a string: %v", m["clientId"])
			assert.Len(t, clientID, 43, "32 random bytes, base64url")
			h.remember(clientID)

			acc, err := h.store.FindByClientID(t.Context(), redact.Secret(clientID))
			require.NoError(t, err)
			assert.Equal(t, store.StatusActive, acc.Status())
			assert.Equal(t, h.fake.URL, acc.SystemURL)
			assert.Equal(t, "recorded-api-key", acc.APIKey.Reveal())
		})
	}
}

func TestRegisterAcceptsEmptyInfoArray(t *testing.T) {
	h := newHarness(t, []crmtest.Option{crmtest.Edit("", crmtest.Fixture(t, "edit-ok-info-array").Reply())})
	r := h.register("key-info-array", h.fake.URL)
	require.True(t, r.Success, r.ErrorMsg)
}

func TestRegisterWithRotatedSecretStillVerifies(t *testing.T) {
	h := newHarness(t, nil)
	r := h.registerSigned("key-old-secret", h.fake.URL, verify.Sign(oldTestSecret, "key-old-secret"))
	require.True(t, r.Success, r.ErrorMsg)
}

func TestRegisterRejectsBadTokenWithoutCallingTheCRM(t *testing.T) {
	h := newHarness(t, nil)
	cases := map[string]string{
		"wrong secret":  verify.Sign("not-our-secret", "key-1"),
		"other key":     verify.Sign(testSecret, "key-2"),
		"empty":         "",
		"not hex":       strings.Repeat("z", 64),
		"truncated":     verify.Sign(testSecret, "key-1")[:40],
		"all zero":      strings.Repeat("0", 64),
		"fixture token": "",
	}
	for name, token := range cases {
		t.Run(name, func(t *testing.T) {
			var r webhookReply
			if name == "fixture token" {
				r = h.registerFixture("wrong-token.txt")
			} else {
				r = h.registerSigned("key-1", h.fake.URL, token)
			}
			assert.False(t, r.Success)
			assert.Contains(t, strings.ToLower(r.ErrorMsg), "token")
		})
	}
	assert.Empty(t, h.fake.Calls(), "a bad token must not reach the CRM")
	_, err := h.store.FindBySystemURL(t.Context(), h.fake.URL)
	assert.ErrorIs(t, err, store.ErrNotFound)
}

func TestRegisterRejectsMalformedRequests(t *testing.T) {
	h := newHarness(t, nil)
	valid := func(mutate func(map[string]string)) string {
		m := map[string]string{"apiKey": "key-1", "systemUrl": h.fake.URL, "token": verify.Sign(testSecret, "key-1")}
		mutate(m)
		b, err := json.Marshal(m)
		require.NoError(t, err)
		return url.Values{"register": {string(b)}}.Encode()
	}
	h.remember(verify.Sign(testSecret, "key-1"))
	cases := []struct {
		name, contentType, body, want string
	}{
		{"empty body", "application/x-www-form-urlencoded", "", "could not be read"},
		{"not a form", "application/json", `{"register":{}}`, "could not be read"},
		{"no content type", "", "register=x", "could not be read"},
		{"register not JSON", "application/x-www-form-urlencoded", "register=not-json", "could not be read"},
		{"register JSON array", "application/x-www-form-urlencoded", "register=%5B%5D", "could not be read"},
		{"trailing data", "application/x-www-form-urlencoded", "register=" + url.QueryEscape(`{"apiKey":"a"} {}`), "could not be read"},
		{"register twice", "application/x-www-form-urlencoded", "register=%7B%7D&register=%7B%7D", "could not be read"},
		{"no api key", "application/x-www-form-urlencoded", valid(func(m map[string]string) { delete(m, "apiKey") }), "could not be read"},
		{"no system url", "application/x-www-form-urlencoded", valid(func(m map[string]string) { delete(m, "systemUrl") }), "could not be read"},
		{"huge api key", "application/x-www-form-urlencoded", valid(func(m map[string]string) { m["apiKey"] = strings.Repeat("k", 300) }), "could not be read"},
		{"bad percent escape", "application/x-www-form-urlencoded", "register=%zz", "could not be read"},
		{"oversized body", "application/x-www-form-urlencoded", "register=" + strings.Repeat("a", 70<<10), "too large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := h.postRaw("/register", tc.contentType, tc.body)
			r := decodeWebhook(t, resp, body)
			assert.False(t, r.Success)
			assert.Contains(t, r.ErrorMsg, tc.want)
		})
	}
	assert.Empty(t, h.fake.Calls())
}

func TestRegisterRejectsAddressesOutsideTheCRM(t *testing.T) {
	h := newHarness(t, nil)
	for _, addr := range []string{
		"https://shop.evil.example", "https://shop.retailcrm.ru.evil.example", "ftp://shop.retailcrm.ru",
		"https://user:pw@shop.retailcrm.ru", "https://shop.retailcrm.ru/some/path", "not a url", "https://shop.retailcrm.ru?x=1",
	} {
		t.Run(addr, func(t *testing.T) {
			r := h.register("key-addr", addr)
			assert.False(t, r.Success)
			assert.NotContains(t, r.ErrorMsg, addr, "the reason must not echo the address back")
		})
	}
	assert.Empty(t, h.fake.Calls())
}

// Every CRM error kind, replayed from testdata/crm: a sensible message for
// the owner, and no active account left behind.
func TestRegisterReportsEachCRMFailure(t *testing.T) {
	cases := []struct {
		fixture string
		want    string
		calls   int
	}{
		{"edit-400-errors-map", "rejected the module registration", 1},
		{"edit-400-errors-array", "rejected the module registration", 1},
		{"edit-401", "did not accept the API key", 1},
		{"edit-402", "insufficient funds", 1},
		{"edit-403-wrong-key", "no access", 1},
		{"edit-404", "method not found", 1},
		{"edit-429", "busy", 4},
		{"edit-503", "not answering", 4},
		{"edit-500", "not answering", 4},
		{"edit-html-no-account", "No CRM account", 1},
	}
	for _, tc := range cases {
		t.Run(tc.fixture, func(t *testing.T) {
			pair := crmtest.Fixture(t, tc.fixture)
			h := newHarness(t, []crmtest.Option{crmtest.Edit("", pair.Reply())})
			r := h.register("key-"+tc.fixture, h.fake.URL)
			assert.False(t, r.Success)
			assert.Contains(t, r.ErrorMsg, tc.want)
			assert.Len(t, h.fake.Edits(), tc.calls, "retries only for 429/5xx")

			acc, err := h.store.FindBySystemURL(t.Context(), h.fake.URL)
			if err == nil {
				assert.NotEqual(t, store.StatusActive, acc.Status(), "no active account after a failure")
				assert.Empty(t, acc.APIKey.Reveal(), "an unproven key is never the account's key")
			} else {
				assert.ErrorIs(t, err, store.ErrNotFound)
			}
		})
	}
}

func TestRegisterKeepsTheCRMsExplanationOfAValidationError(t *testing.T) {
	h := newHarness(t, []crmtest.Option{crmtest.Edit("", crmtest.Fixture(t, "edit-400-errors-map").Reply())})
	pair := crmtest.Fixture(t, "edit-400-errors-map")
	r := h.register("key-validation", h.fake.URL)
	require.False(t, r.Success)
	assert.Contains(t, r.ErrorMsg, pair.Reason)
}

func TestRegisterRetriesUnavailableThenSucceeds(t *testing.T) {
	h := newHarness(t, []crmtest.Option{crmtest.Edit("key-retry", crmtest.Status(503), crmtest.OK())})
	r := h.register("key-retry", h.fake.URL)
	require.True(t, r.Success, r.ErrorMsg)
	assert.Len(t, h.fake.Edits(), 2)
}

func TestRegisterDoesNotRetryForbidden(t *testing.T) {
	h := newHarness(t, []crmtest.Option{crmtest.Edit("key-403", crmtest.Status(403), crmtest.OK())})
	r := h.register("key-403", h.fake.URL)
	assert.False(t, r.Success)
	assert.Len(t, h.fake.Edits(), 1)
}

func TestRegisterGivesUpWhenTheCRMHangs(t *testing.T) {
	// 2 s: each attempt gets 1 s, room enough for the credentials call on a
	// loaded machine before the edit hangs, and the whole stays well under
	// the 10 s bound below.
	h := newHarness(t, []crmtest.Option{crmtest.Edit("", crmtest.Hang())}, withCRMTimeout(2*time.Second))
	start := time.Now()
	r := h.register("key-hang", h.fake.URL)
	assert.False(t, r.Success)
	assert.Contains(t, r.ErrorMsg, "not answering")
	assert.Less(t, time.Since(start), 10*time.Second, "bounded by CRM_TIMEOUT, not by the CRM")
	acc, err := h.store.FindBySystemURL(t.Context(), h.fake.URL)
	require.NoError(t, err, "an unanswered attempt stays pending for the sweeper")
	assert.Equal(t, store.StatusPending, acc.Status())
}

func TestRegisterReplayedKeepsOneAccountAndClientID(t *testing.T) {
	h := newHarness(t, nil)
	first := h.connected("key-replay")
	second := h.connected("key-replay")
	assert.Equal(t, first.ID, second.ID)
	assert.Equal(t, first.ClientID, second.ClientID)
	edits := h.fake.Edits()
	require.Len(t, edits, 2, "one edit per register")
	assert.Equal(t, edits[0].Module["clientId"], edits[1].Module["clientId"])
	page, err := h.store.List(t.Context(), store.ListQuery{})
	require.NoError(t, err)
	assert.Len(t, page.Accounts, 1)
}

func TestRegisterWithANewKeyReplacesItOnlyAfterTheCRMAccepts(t *testing.T) {
	h := newHarness(t, []crmtest.Option{crmtest.Edit("key-new-refused", crmtest.Status(401))})
	acc := h.connected("key-original")

	r := h.register("key-new-refused", h.fake.URL)
	require.False(t, r.Success)
	kept, err := h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Equal(t, "key-original", kept.APIKey.Reveal(), "a refused key replaces nothing")
	assert.Equal(t, store.StatusActive, kept.Status())

	r = h.register("key-new-accepted", h.fake.URL)
	require.True(t, r.Success, r.ErrorMsg)
	replaced, err := h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Equal(t, "key-new-accepted", replaced.APIKey.Reveal())
	assert.Equal(t, acc.ClientID, replaced.ClientID, "reconnecting keeps the clientId")
}

func TestRegisterNormalisesTheShopAddress(t *testing.T) {
	h := newHarness(t, nil)
	a := h.connected("key-norm")
	upper := strings.Replace(h.fake.URL, "http://", "HTTP://", 1) + "/"
	r := h.register("key-norm", upper)
	require.True(t, r.Success, r.ErrorMsg)
	b, err := h.store.FindBySystemURL(t.Context(), h.fake.URL)
	require.NoError(t, err)
	assert.Equal(t, a.ID, b.ID, "one shop, one account")
}

func TestWebhookWrongMethodAnswersInTheCRMsShape(t *testing.T) {
	h := newHarness(t, nil)
	resp, body := h.get("/register")
	r := decodeWebhook(t, resp, body)
	assert.False(t, r.Success)
}

func TestRegisterWithAKeyTheCRMDoesNotKnowSendsNoEdit(t *testing.T) {
	h := newHarness(t, []crmtest.Option{crmtest.Scopes("key-unknown")})
	r := h.register("key-unknown", h.fake.URL)
	assert.False(t, r.Success)
	assert.Contains(t, r.ErrorMsg, "does not know this API key")
	assert.Empty(t, h.fake.Edits())
	_, err := h.store.FindBySystemURL(t.Context(), h.fake.URL)
	assert.ErrorIs(t, err, store.ErrNotFound)
}

func TestRegisterWithMissingScopesNamesThem(t *testing.T) {
	h := newHarness(t, []crmtest.Option{crmtest.Scopes("key-narrow", "integration_read")})
	r := h.register("key-narrow", h.fake.URL)
	assert.False(t, r.Success)
	assert.Equal(t, "The API key lacks permissions this module needs. Connect again and allow: integration_write.", r.ErrorMsg)
	assert.Empty(t, h.fake.Edits())
	_, err := h.store.FindBySystemURL(t.Context(), h.fake.URL)
	assert.ErrorIs(t, err, store.ErrNotFound)
}

// A double-clicked Connect, or the CRM retrying: many registers of one shop
// at once all succeed, with one account and one clientId.
func TestConcurrentRegistersOfOneShopNeverAnswerBusy(t *testing.T) {
	h := newHarness(t, nil)
	const clients, each = 8, 50
	const key = "key-same-shop"
	token := verify.Sign(testSecret, redact.Secret(key))
	h.remember(key, token)
	body, err := json.Marshal(map[string]string{"apiKey": key, "systemUrl": h.fake.URL, "token": token})
	require.NoError(t, err)
	form := url.Values{"register": {string(body)}}.Encode()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
	)
	for range clients {
		wg.Go(func() {
			for range each {
				var r webhookReply
				resp, err := http.Post(h.srv.URL+"/register", "application/x-www-form-urlencoded", strings.NewReader(form))
				if err == nil {
					err = json.NewDecoder(resp.Body).Decode(&r)
					resp.Body.Close()
				}
				if err != nil || !r.Success {
					mu.Lock()
					failures = append(failures, fmt.Sprint(err, r.ErrorMsg))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	assert.Empty(t, failures, "0 of %d registers failed", clients*each)
	page, err := h.store.List(t.Context(), store.ListQuery{Limit: 10})
	require.NoError(t, err)
	require.Len(t, page.Accounts, 1, "one account")
	acc := page.Accounts[0]
	assert.Equal(t, store.StatusActive, acc.Status())
	clientIDs := map[any]bool{}
	for _, e := range h.fake.Edits() {
		clientIDs[e.Module["clientId"]] = true
	}
	assert.Equal(t, map[any]bool{acc.ClientID.Reveal(): true}, clientIDs, "the CRM only ever saw one clientId")
}
