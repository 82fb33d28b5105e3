package config

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
)

// SigningKeys are Ed25519 seeds (32 bytes) that sign the tokens for the
// module's apps: the first signs, all are published (rotation). The
// environment holds them as a comma-separated list of base64 strings.
type SigningKeys [][]byte

// Decode implements envconfig.Decoder through splitList, like every list.
// Its errors never quote the value.
func (k *SigningKeys) Decode(value string) error {
	*k = nil
	parts, err := splitList(value) // the one list parser: trimmed, no empty item
	if err != nil {
		return err
	}
	for i, part := range parts {
		b, err := base64.StdEncoding.DecodeString(part)
		if err != nil {
			b, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(part, "="))
		}
		if err != nil {
			return safeError(fmt.Sprintf("key #%d is not base64", i+1))
		}
		if len(b) != 32 {
			return safeError(fmt.Sprintf("key #%d is %d bytes, want a 32-byte Ed25519 seed (openssl rand -base64 32)", i+1, len(b)))
		}
		*k = append(*k, b)
	}
	return nil
}

// String, Format, LogValue and MarshalJSON keep the keys out of any printed
// Config (see EncryptionKeys).
func (k SigningKeys) String() string               { return fmt.Sprintf("[%d redacted keys]", len(k)) }
func (k SigningKeys) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(k.String())) }
func (k SigningKeys) LogValue() slog.Value         { return slog.StringValue(k.String()) }
func (k SigningKeys) MarshalJSON() ([]byte, error) { return json.Marshal(k.String()) }
