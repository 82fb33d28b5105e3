package redact

import (
	"fmt"
	"log/slog"
	"strings"
)

// Placeholder is what a Secret prints as.
const Placeholder = "[redacted]"

// Secret holds a credential. Printing it in any way yields Placeholder.
type Secret string

// Reveal returns the credential. Call it only where the value must leave the
// process (an HTTP header to the CRM, a hash, an encryption).
func (s Secret) Reveal() string { return string(s) }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s == "" }

// String implements fmt.Stringer.
func (Secret) String() string { return Placeholder }

// GoString implements fmt.GoStringer, so %#v is covered too.
func (Secret) GoString() string { return Placeholder }

// Format covers every other fmt verb (%s %q %x %d ...).
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(Placeholder)) }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(Placeholder) }

// MarshalJSON keeps a Secret out of any JSON reply or log line.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Placeholder + `"`), nil }

// MarshalText keeps a Secret out of text encoders (slog's text handler,
// encoding/xml, ...).
func (Secret) MarshalText() ([]byte, error) { return []byte(Placeholder), nil }

// sensitiveKeys are attribute names whose values are never logged, whatever
// their type: a last line of defence for a plain string logged by mistake.
var sensitiveKeys = []string{
	"apikey", "api_key", "x-api-key", "secret", "token", "clientid", "client_id",
	"cookie", "set-cookie", "session", "authorization", "password", "register",
}

// IsSensitiveKey reports whether an attribute, header or field with this
// name carries a credential.
func IsSensitiveKey(key string) bool {
	k := strings.ToLower(key)
	for _, s := range sensitiveKeys {
		if k == s || strings.HasSuffix(k, "."+s) || strings.HasSuffix(k, "_"+s) {
			return true
		}
	}
	return false
}

// ReplaceAttr is a slog.HandlerOptions.ReplaceAttr that redacts attributes
// with a sensitive name.
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	if IsSensitiveKey(a.Key) {
		return slog.String(a.Key, Placeholder)
	}
	return a
}
