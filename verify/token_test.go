package verify_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/verify"
)

// specVector is the test vector of simple-connection.md §2:
// hash_hmac('sha256', 'api_key', 'secret').
const specVector = "016ab397889c59a1f61a07d69857880a0d867aa1b0edb1014971757cf7a25bb1"

func TestSignMatchesSpecVector(t *testing.T) {
	assert.Equal(t, specVector, verify.Sign("secret", "api_key"))
}

func TestTokenAcceptsSpecVector(t *testing.T) {
	i, err := verify.Token([]redact.Secret{"secret"}, "api_key", specVector)
	require.NoError(t, err)
	assert.Equal(t, 0, i)
}

func TestTokenRotation(t *testing.T) {
	secrets := []redact.Secret{"current-secret", "old-secret"}
	const apiKey = redact.Secret("shop-api-key")

	t.Run("token of the current secret matches index 0", func(t *testing.T) {
		i, err := verify.Token(secrets, apiKey, redact.Secret(verify.Sign("current-secret", apiKey)))
		require.NoError(t, err)
		assert.Equal(t, 0, i)
	})
	t.Run("token of the old secret still verifies, index 1", func(t *testing.T) {
		i, err := verify.Token(secrets, apiKey, redact.Secret(verify.Sign("old-secret", apiKey)))
		require.NoError(t, err)
		assert.Equal(t, 1, i)
	})
	t.Run("a secret listed twice reports the first index", func(t *testing.T) {
		i, err := verify.Token([]redact.Secret{"s", "s"}, apiKey, redact.Secret(verify.Sign("s", apiKey)))
		require.NoError(t, err)
		assert.Equal(t, 0, i)
	})
}

func TestTokenRejects(t *testing.T) {
	secrets := []redact.Secret{"secret"}
	valid := verify.Sign("secret", "api_key")
	tests := []struct {
		name    string
		secrets []redact.Secret
		apiKey  redact.Secret
		token   string
		wantErr error
	}{
		{"empty token is missing", secrets, "api_key", "", verify.ErrNoToken},
		{"token of another secret", secrets, "api_key", verify.Sign("other", "api_key"), verify.ErrBadToken},
		{"token of another apiKey", secrets, "api_key", verify.Sign("secret", "another_key"), verify.ErrBadToken},
		{"valid token, empty apiKey", secrets, "", valid, verify.ErrBadToken},
		{"one bit off", secrets, "api_key", flipLastHexDigit(valid), verify.ErrBadToken},
		{"not hex", secrets, "api_key", strings.Repeat("zz", 32), verify.ErrBadToken},
		{"odd length hex", secrets, "api_key", valid[:63], verify.ErrBadToken},
		{"too short (truncated MAC)", secrets, "api_key", valid[:32], verify.ErrBadToken},
		{"too long (MAC plus a byte)", secrets, "api_key", valid + "00", verify.ErrBadToken},
		{"spaces around a valid token", secrets, "api_key", " " + valid + " ", verify.ErrBadToken},
		{"0x prefix", secrets, "api_key", "0x" + valid, verify.ErrBadToken},
		{"no secrets configured", nil, "api_key", valid, verify.ErrBadToken},
		{"only an empty secret configured", []redact.Secret{""}, "api_key", valid, verify.ErrBadToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i, err := verify.Token(tt.secrets, tt.apiKey, redact.Secret(tt.token))
			require.ErrorIs(t, err, tt.wantErr)
			assert.Equal(t, -1, i)
		})
	}
}

// The spec says the CRM sends lowercase hex. Token compares the decoded MAC
// bytes, and encoding/hex decodes both cases, so an uppercase rendering of a
// valid token is accepted. That is deliberate: it carries exactly the same
// 256 bits, so accepting it gives a forger nothing, and it spares a
// connection from failing on a caller that upper-cases hex (PHP's
// strtoupper, some proxies). The test pins the behaviour so a change to it
// is a decision, not an accident.
func TestTokenAcceptsUppercaseHexOfValidToken(t *testing.T) {
	i, err := verify.Token([]redact.Secret{"secret"}, "api_key", redact.Secret(strings.ToUpper(specVector)))
	require.NoError(t, err)
	assert.Equal(t, 0, i)
}

func TestTokenErrorsNeverQuoteTheToken(t *testing.T) {
	token := verify.Sign("other", "api_key")
	_, err := verify.Token([]redact.Secret{"secret"}, "api_key", redact.Secret(token))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), token)
	assert.NotContains(t, err.Error(), "api_key")
}

func flipLastHexDigit(s string) string {
	last := s[len(s)-1]
	repl := byte('0')
	if last == '0' {
		repl = '1'
	}
	return s[:len(s)-1] + string(repl)
}
