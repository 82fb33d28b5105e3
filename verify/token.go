package verify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"

	"github.com/modulehub/simpleconnect/redact"
)

// Errors of Token.
var (
	ErrNoToken  = errors.New("verify: register token is missing")
	ErrBadToken = errors.New("verify: register token does not match any module secret")
)

// Sign returns the register token the CRM computes for apiKey:
// lowercase hex of HMAC-SHA256(secret, apiKey), as PHP's
// hash_hmac('sha256', $apiKey, $secret).
func Sign(secret, apiKey redact.Secret) string {
	m := hmac.New(sha256.New, []byte(secret.Reveal()))
	m.Write([]byte(apiKey.Reveal()))
	return hex.EncodeToString(m.Sum(nil))
}

// Token checks token against every secret (rotation: all of them verify) and
// returns the index of the one that matched. Every secret is tried even
// after a match, so the time taken does not tell which one matched.
func Token(secrets []redact.Secret, apiKey, token redact.Secret) (int, error) {
	if token.IsZero() {
		return -1, ErrNoToken
	}
	got, err := hex.DecodeString(token.Reveal())
	if err != nil || len(got) != sha256.Size {
		return -1, ErrBadToken
	}
	matched := -1
	for i, s := range secrets {
		m := hmac.New(sha256.New, []byte(s.Reveal()))
		m.Write([]byte(apiKey.Reveal()))
		if hmac.Equal(m.Sum(nil), got) && matched < 0 {
			matched = i
		}
	}
	if matched < 0 {
		return -1, ErrBadToken
	}
	return matched, nil
}
