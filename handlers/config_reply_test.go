package handlers_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// /config is encoded once, in New (BENCHMARKS.md): the reply stays byte for
// byte what the CRM got when it was encoded per request.
func TestConfigReplyBytesAreExact(t *testing.T) {
	h := newHarness(t, nil)
	for range 2 {
		resp, body := h.get("/config")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		assert.Equal(t, `{"success":true,"scopes":["integration_read","integration_write"],"registerUrl":"http://module.test/register"}`+"\n", body)
	}
}
