package handlers_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/store"
)

const (
	adminToken    = "admin-token-current-0001"
	oldAdminToken = "admin-token-previous-0001"
)

func (h *harness) admin(method, path, token string) (*http.Response, map[string]any) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, nil)
	require.NoError(h.t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, body := h.do(req)
	require.Contains(h.t, resp.Header.Get("Content-Type"), "application/json", body)
	var out map[string]any
	require.NoError(h.t, json.Unmarshal([]byte(body), &out), body)
	return resp, out
}

func newAdminHarness(t *testing.T, fakeOpts ...crmtest.Option) *harness {
	h := newHarness(t, fakeOpts, withAdminTokens(adminToken, oldAdminToken))
	h.remember(adminToken, oldAdminToken)
	return h
}

// problemOf checks the admin API's error shape and returns its code.
func problemOf(t *testing.T, resp *http.Response, body map[string]any, status int) string {
	t.Helper()
	require.Equal(t, status, resp.StatusCode, body)
	p, ok := body["error"].(map[string]any)
	require.True(t, ok, "a problem has an error object: %v", body)
	assert.Equal(t, float64(status), p["status"])
	assert.NotEmpty(t, p["message"])
	code, _ := p["code"].(string)
	return code
}

func TestAdminAPIIsOffWithoutTokens(t *testing.T) {
	h := newHarness(t, nil)
	resp, body := h.admin(http.MethodGet, "/admin/api/accounts", "anything")
	assert.Equal(t, "not_found", problemOf(t, resp, body, http.StatusNotFound))
}

func TestAdminAPIAuth(t *testing.T) {
	h := newAdminHarness(t)
	cases := map[string]struct {
		token  string
		status int
	}{
		"missing":         {"", http.StatusUnauthorized},
		"wrong":           {"admin-token-wrong-000001", http.StatusUnauthorized},
		"prefix of valid": {adminToken[:10], http.StatusUnauthorized},
		"current":         {adminToken, http.StatusOK},
		"rotated out one": {oldAdminToken, http.StatusOK},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			resp, body := h.admin(http.MethodGet, "/admin/api/accounts", tc.token)
			if tc.status != http.StatusOK {
				assert.Equal(t, "unauthorized", problemOf(t, resp, body, tc.status))
				assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer")
				return
			}
			assert.Equal(t, http.StatusOK, resp.StatusCode)
		})
	}
	resp, body := h.admin(http.MethodGet, "/admin/api/nothing-here", "")
	problemOf(t, resp, body, http.StatusUnauthorized) // no route list for strangers
	resp, body = h.admin(http.MethodGet, "/admin/api/nothing-here", adminToken)
	problemOf(t, resp, body, http.StatusNotFound)
}

func TestAdminGetShowsAnAccountWithoutCredentials(t *testing.T) {
	h := newAdminHarness(t)
	acc := h.connected("key-admin-get")
	resp, body := h.admin(http.MethodGet, "/admin/api/accounts/"+acc.ID, adminToken)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, acc.ID, body["id"])
	assert.Equal(t, h.fake.URL, body["system_url"])
	assert.Equal(t, "active", body["status"])
	assert.NotContains(t, body, "api_key")
	assert.NotContains(t, body, "client_id")

	for _, id := range []string{"01AAAAAAAAAAAAAAAAAAAAAAAA", "not-an-id", strings.ToLower(acc.ID)} {
		resp, body = h.admin(http.MethodGet, "/admin/api/accounts/"+id, adminToken)
		assert.Equal(t, "not_found", problemOf(t, resp, body, http.StatusNotFound), id)
	}
}

func TestAdminListFiltersAndPages(t *testing.T) {
	h := newAdminHarness(t)
	// The store's clock stands still, so every account below is made in the
	// same millisecond, as a burst of connections can be: the order listed
	// must come from the ids themselves, every run.
	frozen := time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)
	h.store.SetClock(func() time.Time { return frozen })
	var ids []string
	for range 5 {
		fake := crmtest.New(t)
		h.fake = fake
		ids = append(ids, h.connected("key-list").ID)
	}
	// The last one switches off.
	last, err := h.store.SetActivity(t.Context(), ids[4], store.State{}, store.Lease{})
	require.NoError(t, err)
	require.Equal(t, store.StatusInactive, last.Status())

	seen := []string{}
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5)
		resp, body := h.admin(http.MethodGet, "/admin/api/accounts?limit=2&cursor="+cursor, adminToken)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		for _, a := range body["accounts"].([]any) {
			seen = append(seen, a.(map[string]any)["id"].(string))
		}
		next, _ := body["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	assert.Equal(t, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}, seen, "newest first, each once")

	resp, body := h.admin(http.MethodGet, "/admin/api/accounts?status=inactive", adminToken)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Len(t, body["accounts"], 1)
	assert.Equal(t, ids[4], body["accounts"].([]any)[0].(map[string]any)["id"])

	for _, q := range []string{"status=deleted", "limit=0", "limit=201", "limit=x", "cursor=../../etc"} {
		resp, body := h.admin(http.MethodGet, "/admin/api/accounts?"+q, adminToken)
		assert.Equal(t, "bad_query", problemOf(t, resp, body, http.StatusBadRequest), q)
	}
}

func TestAdminDeactivateTellsTheCRMFirst(t *testing.T) {
	h := newAdminHarness(t)
	acc := h.connected("key-deactivate")
	resp, body := h.admin(http.MethodPost, "/admin/api/accounts/"+acc.ID+"/deactivate", adminToken)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "inactive", body["status"])
	edits := h.fake.Edits()
	require.Len(t, edits, 2)
	assert.Equal(t, false, edits[1].Module["active"])
	assert.Equal(t, "key-deactivate", edits[1].APIKey())
	assert.Equal(t, edits[0].Module["clientId"], edits[1].Module["clientId"])

	events, err := h.store.Events(t.Context(), "", 10)
	require.NoError(t, err)
	require.NotEmpty(t, events)
	assert.Equal(t, store.EventDeactivated, events[len(events)-1].Type)
}

func TestAdminDeactivateRefusedByTheCRMChangesNothing(t *testing.T) {
	h := newAdminHarness(t, crmtest.Edit("key-revoked", crmtest.OK(), crmtest.Status(403)))
	acc := h.connected("key-revoked")
	resp, body := h.admin(http.MethodPost, "/admin/api/accounts/"+acc.ID+"/deactivate", adminToken)
	assert.Equal(t, "crm_denied", problemOf(t, resp, body, http.StatusBadGateway))
	got, err := h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Equal(t, store.StatusActive, got.Status())

	resp, body = h.admin(http.MethodPost, "/admin/api/accounts/"+acc.ID+"/deactivate?local_only=true", adminToken)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "inactive", body["status"])
	assert.Len(t, h.fake.Edits(), 2, "local_only does not call the CRM")
}

func TestAdminResyncSendsTheModuleAgain(t *testing.T) {
	h := newAdminHarness(t)
	acc := h.connected("key-resync")
	resp, body := h.admin(http.MethodPost, "/admin/api/accounts/"+acc.ID+"/resync", adminToken)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	edits := h.fake.Edits()
	require.Len(t, edits, 2)
	assert.Equal(t, edits[0].Module, edits[1].Module)

	resp, body = h.admin(http.MethodPost, "/admin/api/accounts/01AAAAAAAAAAAAAAAAAAAAAAAA/resync", adminToken)
	problemOf(t, resp, body, http.StatusNotFound)
}

func TestAdminResyncOfAPendingAccountIsAConflict(t *testing.T) {
	h := newAdminHarness(t, crmtest.Edit("", crmtest.Status(503)))
	r := h.register("key-pending", h.fake.URL)
	require.False(t, r.Success)
	acc, err := h.store.FindBySystemURL(t.Context(), h.fake.URL)
	require.NoError(t, err)
	resp, body := h.admin(http.MethodPost, "/admin/api/accounts/"+acc.ID+"/resync", adminToken)
	assert.Equal(t, "not_connected", problemOf(t, resp, body, http.StatusConflict))
}

func TestAdminEventsListsTheStream(t *testing.T) {
	h := newAdminHarness(t)
	acc := h.connected("key-events")
	h.connected("key-events-2")
	resp, body := h.admin(http.MethodGet, "/admin/api/events?limit=1", adminToken)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	events := body["events"].([]any)
	require.Len(t, events, 1)
	first := events[0].(map[string]any)
	assert.Equal(t, store.EventConnected, first["type"])
	assert.Equal(t, acc.ID, first["account_id"])

	resp, body = h.admin(http.MethodGet, "/admin/api/events?after="+body["next"].(string), adminToken)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Len(t, body["events"], 1)
	second := body["events"].([]any)[0].(map[string]any)
	assert.Equal(t, store.EventReconnected, second["type"])
	assert.Equal(t, true, second["key_changed"])

	resp, body = h.admin(http.MethodGet, "/admin/api/events?after=bogus", adminToken)
	problemOf(t, resp, body, http.StatusBadRequest)
}

func TestAdminShowsAnUnreadableAccountWithoutHidingTheOthers(t *testing.T) {
	h := newAdminHarness(t)
	good := h.connected("key-readable")
	other := crmtest.New(t)
	r := h.register("key-unreadable", other.URL)
	require.True(t, r.Success, r.ErrorMsg)
	bad, err := h.store.FindBySystemURL(t.Context(), other.URL)
	require.NoError(t, err)
	h.mr.HSet("{test}:acct:"+bad.ID, "key", "\x01damaged") // a damaged sealed value

	resp, body := h.admin(http.MethodGet, "/admin/api/accounts", adminToken)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	statuses := map[string]any{}
	for _, a := range body["accounts"].([]any) {
		acc := a.(map[string]any)
		statuses[acc["id"].(string)] = acc["status"]
	}
	assert.Equal(t, map[string]any{good.ID: "active", bad.ID: "unreadable"}, statuses)

	resp, body = h.admin(http.MethodGet, "/admin/api/accounts/"+bad.ID, adminToken)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "unreadable", body["status"])
	assert.NotContains(t, body, "system_url", "nothing of it can be trusted")
}

func TestAdminResealReportsWhatItDid(t *testing.T) {
	h := newAdminHarness(t)
	h.connected("key-reseal")
	resp, body := h.admin(http.MethodPost, "/admin/api/reseal", adminToken)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.EqualValues(t, 0, body["resealed"], "already sealed with the only key")
	assert.EqualValues(t, 0, body["unreadable"])
	byKey, ok := body["byKey"].(map[string]any)
	require.True(t, ok, body)
	require.Len(t, byKey, 1)
	for id, n := range byKey {
		assert.Len(t, id, 8, "a key id, never a key")
		assert.EqualValues(t, 1, n)
	}
	resp, body = h.admin(http.MethodPost, "/admin/api/reseal", "")
	assert.Equal(t, "unauthorized", problemOf(t, resp, body, http.StatusUnauthorized))
}

func TestAdminListsAccountsWhoseKeyDiedByStatus(t *testing.T) {
	h := newAdminHarness(t)
	ok := h.connected("key-healthy")
	other := crmtest.New(t)
	require.True(t, h.register("key-revoked", other.URL).Success)
	revoked, err := h.store.FindBySystemURL(t.Context(), other.URL)
	require.NoError(t, err)
	_, _, err = h.store.SetKeyHealth(t.Context(), revoked.ID, revoked.KeySeq, store.KeyRevoked, nil)
	require.NoError(t, err)

	resp, body := h.admin(http.MethodGet, "/admin/api/accounts?status=key_revoked", adminToken)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	accounts := body["accounts"].([]any)
	require.Len(t, accounts, 1)
	assert.Equal(t, revoked.ID, accounts[0].(map[string]any)["id"])
	assert.Equal(t, "key_revoked", accounts[0].(map[string]any)["status"])
	resp, body = h.admin(http.MethodGet, "/admin/api/accounts?status=active", adminToken)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Len(t, body["accounts"].([]any), 1)
	assert.Equal(t, ok.ID, body["accounts"].([]any)[0].(map[string]any)["id"])
}
