package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
)

// SigningKeys are Ed25519 seeds (32 bytes) that sign the tokens for the
// module's apps: the first signs, all are published (rotation). The
// environment holds them as a comma-separated list of base64 strings.
type SigningKeys [][]byte

// Decode implements envconfig.Decoder through splitList, like every list.
// Its errors never quote the value.
func (k *SigningKeys) Decode(value string) error {
	keys, err := decodeKeys(value, "want a 32-byte Ed25519 seed (openssl rand -base64 32)")
	*k = keys
	return err
}

// String, Format, LogValue and MarshalJSON keep the keys out of any printed
// Config (see EncryptionKeys).
func (k SigningKeys) String() string               { return fmt.Sprintf("[%d redacted keys]", len(k)) }
func (k SigningKeys) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(k.String())) }
func (k SigningKeys) LogValue() slog.Value         { return slog.StringValue(k.String()) }
func (k SigningKeys) MarshalJSON() ([]byte, error) { return json.Marshal(k.String()) }
