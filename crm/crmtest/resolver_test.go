package crmtest_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/crm/crmtest"
)

func TestLoopbackResolverAnswersOnlyItsSuffix(t *testing.T) {
	r := crmtest.LoopbackResolver("shops.test")
	addrs, err := r.LookupHost(t.Context(), "shop-000001.shops.test")
	require.NoError(t, err)
	assert.Equal(t, []string{"127.0.0.1"}, addrs)

	_, err = r.LookupHost(t.Context(), "shop.example.com")
	assert.Error(t, err, "names outside the suffix do not resolve")

	addrs, err = r.LookupHost(t.Context(), "localhost")
	require.NoError(t, err, "names of the hosts file still resolve")
	assert.Contains(t, addrs, "127.0.0.1")
}
