package handlers_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/store"
)

func (h *harness) activity(clientID, systemURL, activity string) webhookReply {
	h.t.Helper()
	h.remember(clientID)
	resp, body := h.postForm("/activity", url.Values{"clientId": {clientID}, "systemUrl": {systemURL}, "activity": {activity}})
	return decodeWebhook(h.t, resp, body)
}

func TestActivityChangesTheAccountState(t *testing.T) {
	h := newHarness(t, nil)
	acc := h.connected("key-activity")
	steps := []struct {
		activity string
		want     store.Status
	}{
		{`{"active":false,"freeze":false}`, store.StatusInactive},
		{`{"active":true,"freeze":true}`, store.StatusFrozen},
		{`{"active":true,"freeze":false}`, store.StatusActive},
		{`{"active":true}`, store.StatusActive},
	}
	for _, s := range steps {
		r := h.activity(acc.ClientID.Reveal(), h.fake.URL, s.activity)
		require.True(t, r.Success, r.ErrorMsg)
		got, err := h.store.Get(t.Context(), acc.ID)
		require.NoError(t, err)
		assert.Equal(t, s.want, got.Status(), s.activity)
		assert.False(t, got.ActivityAt.IsZero())
	}
}

func TestActivityForAnUnknownClientFails(t *testing.T) {
	h := newHarness(t, nil)
	r := h.activity("never-issued-client-id-000000000000000000000", h.fake.URL, `{"active":true,"freeze":false}`)
	assert.False(t, r.Success)
	assert.Contains(t, r.ErrorMsg, "not connected")
}

func TestActivityRejectsMalformedCallbacks(t *testing.T) {
	h := newHarness(t, nil)
	acc := h.connected("key-activity-bad")
	for name, activity := range map[string]string{
		"not json":    "yes",
		"no active":   `{"freeze":true}`,
		"wrong types": `{"active":"yes"}`,
		"empty":       "",
	} {
		t.Run(name, func(t *testing.T) {
			r := h.activity(acc.ClientID.Reveal(), h.fake.URL, activity)
			assert.False(t, r.Success)
		})
	}
	got, err := h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Equal(t, store.StatusActive, got.Status(), "nothing changed")
}

func TestActivityFromANewAddressMovesTheShop(t *testing.T) {
	h := newHarness(t, nil)
	acc := h.connected("key-move")
	moved := strings.Replace(h.fake.URL, "127.0.0.1", "localhost", 1)
	r := h.activity(acc.ClientID.Reveal(), moved, `{"active":true,"freeze":false}`)
	require.True(t, r.Success, r.ErrorMsg)
	got, err := h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Equal(t, moved, got.SystemURL)
	_, err = h.store.FindBySystemURL(t.Context(), h.fake.URL)
	assert.ErrorIs(t, err, store.ErrNotFound, "the old address no longer names the shop")

	r = h.activity(acc.ClientID.Reveal(), "https://shop.evil.example", `{"active":true,"freeze":false}`)
	assert.False(t, r.Success, "a move is checked like a register")
}

func TestAMoveOutsideTheCRMsCloudsIsRefusedButTheSwitchApplies(t *testing.T) {
	h := newHarness(t, nil)
	acc := h.connected("key-move-refused")
	box := crmtest.New(t) // a box installation: a third party's host
	r := h.activity(acc.ClientID.Reveal(), box.URL, `{"active":false,"freeze":false}`)
	assert.False(t, r.Success)
	assert.Contains(t, r.ErrorMsg, "new address")
	assert.Empty(t, box.Calls(), "the shop's key is never sent to a host the account does not follow")
	got, err := h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Equal(t, h.fake.URL, got.SystemURL, "the address stays")
	assert.Equal(t, store.StatusInactive, got.Status(), "the switch-off happened in the CRM: it is applied")
	events, err := h.store.Events(t.Context(), "", 100)
	require.NoError(t, err)
	assert.Equal(t, store.EventMoveRefused, events[len(events)-1].Type)
}

func TestSwitchedOffAndMovedSendsOffToTheNewAddress(t *testing.T) {
	h := newHarness(t, nil)
	acc := h.connected("key-move-off")
	moved := strings.Replace(h.fake.URL, "127.0.0.1", "localhost", 1)
	before := len(h.fake.Edits())
	r := h.activity(acc.ClientID.Reveal(), moved, `{"active":false,"freeze":false}`)
	require.True(t, r.Success, r.ErrorMsg)
	edits := h.fake.Edits()[before:]
	require.Len(t, edits, 1)
	assert.Equal(t, false, edits[0].Module["active"], "the edit carries the callback's state, never the stored one")
	got, err := h.store.Get(t.Context(), acc.ID)
	require.NoError(t, err)
	assert.Equal(t, moved, got.SystemURL)
	assert.Equal(t, store.StatusInactive, got.Status())
	assert.True(t, got.InSync())
}
