package handlers_test

import (
	"net/url"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/store"
)

// With the production settings (guard on, https only, CRM domains plus
// "localhost" so a name resolving to loopback gets as far as the dial),
// every hostile systemUrl class is refused with zero connections to the
// listener it points at. Redirects to private addresses are proven in the
// crm package (TestRedirectToPrivateAddressMakesNoConnection and friends).
func TestHostileShopAddressesMakeNoConnection(t *testing.T) {
	fake := crmtest.New(t)
	u, err := url.Parse(fake.URL)
	require.NoError(t, err)
	port := u.Port()
	p, err := strconv.Atoi(port)
	require.NoError(t, err)

	h := newHarness(t, nil, func(c *config.Config) {
		c.CRMAllowInsecure = false
		c.CRMAllowedHosts = append(c.CRMAllowedHosts, "localhost")
		c.CRMAllowedPorts = []uint16{uint16(p)}
	})

	cases := map[string]string{
		"private v4 literal":            "https://127.0.0.1:" + port,
		"private v4 10/8":               "https://10.0.0.1",
		"v6 loopback":                   "https://[::1]:" + port,
		"v4-mapped v6":                  "https://[::ffff:127.0.0.1]:" + port,
		"link-local metadata":           "https://169.254.169.254",
		"name resolving to loopback":    "https://localhost:" + port,
		"userinfo":                      "https://user:pw@localhost:" + port,
		"wrong scheme":                  "http://localhost:" + port,
		"wrong suffix":                  "https://shop.evil.example:" + port,
		"suffix as a prefix":            "https://shop.retailcrm.ru.localhost.evil:" + port,
		"port not allowed":              "https://localhost:1",
		"trailing-dot name to loopback": "https://localhost.:" + port,
	}
	for name, addr := range cases {
		t.Run(name, func(t *testing.T) {
			r := h.register("key-guard", addr)
			assert.False(t, r.Success)
			assert.NotContains(t, r.ErrorMsg, "not answering", "refused, not retried as an outage")
		})
	}
	assert.Zero(t, fake.Connections(), "no hostile address reached the listener")
	page, err := h.store.List(t.Context(), store.ListQuery{})
	require.NoError(t, err)
	assert.Empty(t, page.Accounts, "no account, pending or not, is left behind")
}

// The one address above that passes every check but the dial: the guard
// refuses it, and the owner reads why.
func TestNameResolvingToLoopbackIsRefusedByTheGuard(t *testing.T) {
	fake := crmtest.New(t)
	u, err := url.Parse(fake.URL)
	require.NoError(t, err)
	p, err := strconv.Atoi(u.Port())
	require.NoError(t, err)
	h := newHarness(t, nil, func(c *config.Config) {
		c.CRMAllowInsecure = false
		c.CRMAllowedHosts = append(c.CRMAllowedHosts, "localhost")
		c.CRMAllowedPorts = []uint16{uint16(p)}
	})
	r := h.register("key-guard", "https://localhost:"+u.Port())
	assert.False(t, r.Success)
	assert.Contains(t, r.ErrorMsg, "can only be connected from a RetailCRM / Simla.com account")
	assert.Zero(t, fake.Connections())
}

// Development mode relaxes the scheme, the port and the dial guard, never
// the allow list: a loopback CRM that CRM_ALLOWED_HOSTS does not name is
// refused before any connection, by address or by name.
func TestInsecureModeStillNeedsTheHostListed(t *testing.T) {
	fake := crmtest.New(t)
	u, err := url.Parse(fake.URL)
	require.NoError(t, err)
	h := newHarness(t, nil, func(c *config.Config) {
		c.CRMAllowInsecure = true
		c.CRMAllowedHosts = slices.Clone(config.DefaultCRMHosts)
	})
	for _, addr := range []string{fake.URL, "http://localhost:" + u.Port(), "http://[::1]:" + u.Port()} {
		r := h.register("key-insecure", addr)
		assert.False(t, r.Success, addr)
		assert.Contains(t, r.ErrorMsg, "can only be connected from a RetailCRM / Simla.com account", addr)
	}
	assert.Zero(t, fake.Connections(), "nothing reached the unlisted CRM")

	listed := newHarness(t, nil, func(c *config.Config) {
		c.CRMAllowInsecure = true
		c.CRMAllowedHosts = []string{"127.0.0.1"}
	})
	r := listed.register("key-insecure", listed.fake.URL)
	assert.True(t, r.Success, "listed, the same loopback CRM connects: %s", r.ErrorMsg)
}
