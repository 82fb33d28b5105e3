package redact

import (
	"crypto/subtle"
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

// Equal compares two secrets in constant time (for equal lengths).
func (s Secret) Equal(o Secret) bool {
	return subtle.ConstantTimeCompare([]byte(s), []byte(o)) == 1
}

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
var sensitiveKeys = map[string]bool{
	"apikey": true, "api_key": true, "x-api-key": true, "secret": true, "token": true,
	"clientid": true, "client_id": true, "cookie": true, "set-cookie": true,
	"session": true, "authorization": true, "password": true, "register": true,
}

// IsSensitiveKey reports whether an attribute, header or field with this
// name carries a credential: the name itself, or what follows any "." or
// "_" in it ("http.cookie", "shop_api_key"), case-insensitively. It runs
// for every attribute of every log line, so it allocates only for names
// with capitals.
func IsSensitiveKey(key string) bool {
	k := key
	for i := 0; i < len(k); i++ {
		if c := k[i]; c >= 'A' && c <= 'Z' {
			k = strings.ToLower(key)
			break
		}
	}
	if sensitiveKeys[k] {
		return true
	}
	for i := 0; i < len(k); i++ {
		if (k[i] == '.' || k[i] == '_') && sensitiveKeys[k[i+1:]] {
			return true
		}
	}
	return false
}

// ReplaceAttr is a slog.HandlerOptions.ReplaceAttr that redacts attributes
// with a sensitive name.
func ReplaceAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.LevelKey {
		// With a ReplaceAttr set, slog hands the level over as a value and
		// the JSON handler would encode it through encoding/json: as text
		// it is the same output, on every line, without reflection.
		if l, ok := a.Value.Any().(slog.Level); ok {
			return slog.String(a.Key, l.String())
		}
	}
	if IsSensitiveKey(a.Key) {
		return slog.String(a.Key, Placeholder)
	}
	return a
}
