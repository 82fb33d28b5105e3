package verify_test

import (
	"testing"

	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/verify"
)

// BenchmarkToken measures checking a register token: one HMAC-SHA256 per
// configured secret (every secret is tried, match or not), plus the hex
// decode. "rotation" is two secrets, the token signed with the second.
func BenchmarkToken(b *testing.B) {
	const apiKey = redact.Secret("bench-api-key-0123456789abcdefghijklmnop")
	for _, bc := range []struct {
		name    string
		secrets []redact.Secret
		signer  redact.Secret
	}{
		{"one-secret", []redact.Secret{"current-secret"}, "current-secret"},
		{"rotation", []redact.Secret{"current-secret", "previous-secret"}, "previous-secret"},
		{"wrong-token", []redact.Secret{"current-secret", "previous-secret"}, "someone-else"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			token := redact.Secret(verify.Sign(bc.signer, apiKey))
			b.ReportAllocs()
			for b.Loop() {
				_, _ = verify.Token(bc.secrets, apiKey, token)
			}
		})
	}
}
