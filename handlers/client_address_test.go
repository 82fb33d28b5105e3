package handlers_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/handlers"
	"github.com/modulehub/simpleconnect/verify"
)

// The client address keys the rate limit. A header is the caller's to
// write, so it names the client only when a proxy we trust added it.
func TestTheClientAddressIsThePeerUnlessATrustedProxyForwardedIt(t *testing.T) {
	cases := []struct {
		name, peer, forwardedFor, want string
		trusted                        []string
	}{
		{"no trusted proxy: the peer, whatever X-Forwarded-For says", "198.51.100.7:4711", "203.0.113.9", "198.51.100.7", nil},
		{"no trusted proxy: a private peer is not a proxy either", "10.0.0.5:4711", "203.0.113.9", "10.0.0.5", nil},
		{"no trusted proxy: nor is loopback", "127.0.0.1:4711", "203.0.113.9", "127.0.0.1", nil},
		{"a trusted proxy: the address it added", "10.0.0.5:4711", "203.0.113.9", "203.0.113.9", []string{"10.0.0.0/8"}},
		{"a trusted proxy: not what the client wrote before it", "10.0.0.5:4711", "192.0.2.1, 203.0.113.9", "203.0.113.9", []string{"10.0.0.0/8"}},
		{"a peer outside the trusted ranges: its header is ignored", "172.16.0.1:4711", "203.0.113.9", "172.16.0.1", []string{"10.0.0.0/8"}},
		{"a trusted proxy without the header: the proxy", "10.0.0.5:4711", "", "10.0.0.5", []string{"10.0.0.0/8"}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/register", nil)
			req.RemoteAddr = tt.peer
			if tt.forwardedFor != "" {
				req.Header.Set("X-Forwarded-For", tt.forwardedFor)
			}
			req.Header.Set("X-Real-IP", "203.0.113.66") // never read: no proxy of ours sets it
			assert.Equal(t, tt.want, handlers.IPExtractor(tt.trusted)(req))
		})
	}
}

// failFrom sends a register with a bad token (a failure the budget counts)
// with the given forwarding headers ("" for none), and says whether it was
// refused as over the budget.
func (h *harness) failFrom(forwardedFor, realIP string) bool {
	h.t.Helper()
	_, r := h.postRegisterWith("key-forged", h.fake.URL, verify.Sign("not-our-secret", "key-forged"),
		map[string]string{"X-Forwarded-For": forwardedFor, "X-Real-IP": realIP})
	require.False(h.t, r.Success)
	if r.ErrorMsg == tooManyFailures {
		return true
	}
	require.Equal(h.t, badTokenMsg, r.ErrorMsg)
	return false
}

// The same, end to end through the server: with no trusted proxy, one peer
// that writes a new X-Forwarded-For or X-Real-IP on every failed request
// is still one address, and goes over its failure budget like any other
// (a server that read the headers would give it a fresh budget per
// request). Behind a trusted proxy the address the proxy added is the
// client: many forwarded clients each have a budget of their own, and one
// of them alone goes over its own.
func TestOnePeerForgingForwardingHeadersIsLimitedAsOneAddress(t *testing.T) {
	budget := config.DefaultFailedRequestsPerMinute
	// Every request carries different headers: only X-Forwarded-For, only
	// X-Real-IP, or both.
	forged := func(i int) (string, string) {
		xff, real := fmt.Sprintf("203.0.113.%d", i+1), fmt.Sprintf("198.51.100.%d", i+1)
		switch i % 3 {
		case 0:
			return xff, ""
		case 1:
			return "", real
		}
		return xff + ", 192.0.2.1", real
	}

	t.Run("no trusted proxy", func(t *testing.T) {
		h := newHarness(t, nil, withLimits())
		h.freezeLimiterClock()
		for i := range budget + 10 {
			xff, real := forged(i)
			refused := h.failFrom(xff, real)
			if i < budget {
				require.False(t, refused, "failure %d is within the peer's budget", i+1)
			} else {
				require.True(t, refused, "failure %d is past the peer's budget, whatever it says it forwards for", i+1)
			}
		}
		assert.Contains(t, h.logs.String(), "client=127.0.0.1", "the limited address logged is the peer's")
	})

	t.Run("behind a trusted proxy", func(t *testing.T) {
		h := newHarness(t, nil, withLimits(), withTrustedProxies("127.0.0.0/8"))
		h.freezeLimiterClock()
		for i := range budget + 10 {
			require.False(t, h.failFrom(fmt.Sprintf("203.0.113.%d", i+1), ""), "failure %d is its forwarded client's first", i+1)
		}
		for i := range budget + 1 {
			refused := h.failFrom("192.0.2.77", "")
			require.Equal(t, i >= budget, refused, "failure %d of one forwarded client", i+1)
		}
	})
}
