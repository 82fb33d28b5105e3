package crmtest_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/crm/crmtest"
)

func TestLoopbackResolverAnswersOnlyItsSuffix(t *testing.T) {
	r := crmtest.LoopbackResolver("loadtest.localhost")
	addrs, err := r.LookupHost(t.Context(), "shop-000001.loadtest.localhost")
	require.NoError(t, err)
	assert.Equal(t, []string{"127.0.0.1"}, addrs)

	_, err = r.LookupHost(t.Context(), "shop.example.com")
	assert.Error(t, err, "names outside the suffix do not resolve")
}
