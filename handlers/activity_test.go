package handlers_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
