package handlers_test

import (
	"log/slog"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/handlers"
	"github.com/modulehub/simpleconnect/i18n"
	"github.com/modulehub/simpleconnect/verify"
)

// registerIn sends a register with a wrong token for systemURL, with an
// optional Accept-Language, and returns the errorMsg.
func (h *harness) registerIn(systemURL, acceptLanguage string) string {
	h.t.Helper()
	_, r := h.postRegisterWith("key-lang", systemURL, verify.Sign("not-our-secret", "key-lang"),
		map[string]string{"Accept-Language": acceptLanguage})
	require.False(h.t, r.Success)
	return r.ErrorMsg
}

var words = i18n.MustLoad()

// The module card speaks the shop's language: Russian for a .ru CRM,
// Spanish for .es, English otherwise; Accept-Language, when the CRM sends
// one we offer, decides first.
func TestErrorMsgIsInTheShopsLanguage(t *testing.T) {
	h := newHarness(t, nil)
	for _, tt := range []struct {
		name, systemURL, acceptLanguage, lang string
	}{
		{"russian for a .ru CRM", "https://shop.retailcrm.ru", "", "ru"},
		{"spanish for a .es CRM", "https://shop.retailcrm.es", "", "es"},
		{"english for a .com CRM", "https://shop.simla.com", "", "en"},
		{"english for a .pro CRM", "https://shop.retailcrm.pro", "", "en"},
		{"english when the address cannot be read", "::not a url", "", "en"},
		{"Accept-Language first: spanish for a .ru CRM", "https://shop.retailcrm.ru", "es-ES,es;q=0.9", "es"},
		{"Accept-Language first: russian for a .com CRM", "https://shop.simla.com", "ru-RU", "ru"},
		{"an Accept-Language we do not offer: the host decides", "https://shop.retailcrm.es", "de-DE", "es"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := h.registerIn(tt.systemURL, tt.acceptLanguage)
			assert.Equal(t, words.For(tt.lang).T("card.bad_token"), got)
		})
	}
	assert.Equal(t, "В запросе на подключение неверный токен: секрет этого модуля не совпадает. Сообщите разработчику модуля.",
		h.registerIn("https://shop.retailcrm.ru", ""), "the Russian text itself")
}

// The address check's reason is said in the same language as the rest.
func TestAnAddressReasonIsInTheShopsLanguage(t *testing.T) {
	h := newHarness(t, nil, func(c *config.Config) { c.CRMAllowInsecure = false })
	for lang, want := range map[string]string{
		"ru": "Адрес вашей CRM нельзя использовать: он должен использовать https.",
		"es": "La dirección de su CRM no se puede usar: debe usar https.",
		"en": "Your CRM address cannot be used: it must use https.",
	} {
		systemURL := map[string]string{"ru": "http://shop.retailcrm.ru", "es": "http://shop.retailcrm.es", "en": "http://shop.simla.com"}[lang]
		r := h.register("key-address-"+lang, systemURL)
		assert.False(t, r.Success)
		assert.Equal(t, want, r.ErrorMsg, lang)
	}
}

// An activity callback's errorMsg follows the address it carries.
func TestActivityErrorMsgIsInTheShopsLanguage(t *testing.T) {
	h := newHarness(t, nil)
	for lang, systemURL := range map[string]string{"ru": "https://shop.retailcrm.ru", "es": "https://shop.retailcrm.es", "en": "https://shop.simla.com"} {
		resp, body := h.postForm("/activity", url.Values{
			"clientId": {"no-such-client-" + lang}, "systemUrl": {systemURL}, "activity": {`{"active":true}`},
		})
		r := decodeWebhook(t, resp, body)
		assert.False(t, r.Success)
		assert.Equal(t, words.For(lang).T("card.unknown_client"), r.ErrorMsg, lang)
	}
}

// A callback that names no address is answered in the language of the
// address the account has.
func TestActivityWithoutAnAddressIsAnsweredInTheStoredShopsLanguage(t *testing.T) {
	h := newHarness(t, nil)
	at, err := h.store.BeginConnect(t.Context(), "https://shop-lang.retailcrm.ru", "key-lang-stored")
	require.NoError(t, err)
	h.remember("key-lang-stored", at.Account.ClientID.Reveal())
	srv := httptest.NewServer(handlers.New(handlers.Deps{
		Config: h.cfg, Log: slog.New(slog.DiscardHandler), Connector: stubConnector{err: crm.ErrUnavailable},
		Accounts: h.store, Sessions: h.store, Store: h.store,
	}))
	t.Cleanup(srv.Close)
	h.srv = srv
	resp, body := h.postForm("/activity", url.Values{"clientId": {at.Account.ClientID.Reveal()}, "activity": {`{"active":true}`}})
	r := decodeWebhook(t, resp, body)
	assert.False(t, r.Success)
	assert.Equal(t, words.For("ru").T("card.crm_unavailable"), r.ErrorMsg)
}
