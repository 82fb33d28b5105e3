package handlers_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/modulehub/simpleconnect/handlers"
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
