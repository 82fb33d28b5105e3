package store

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/modulehub/simpleconnect/redact"
)

// Hash field names of an account; short, as every account carries them.
const (
	fID          = "id"
	fSystemURL   = "url"
	fClientID    = "cid"  // sealed
	fAPIKey      = "key"  // sealed
	fPendingKey  = "pkey" // sealed
	fPendingAt   = "pat"
	fConnected   = "con"
	fActive      = "act"
	fFrozen      = "frz"
	fCreatedAt   = "cat"
	fUpdatedAt   = "uat"
	fConnectedAt = "nat"
	fActivityAt  = "aat"
	fSettings    = "set" // sealed JSON
)

// encode turns an account into hash fields, sealing its credentials with
// the current key and the field's location as additional data.
func (s *Redis) encode(a Account) (map[string]any, error) {
	key := s.keys.account(a.ID)
	f := map[string]any{
		fID:        a.ID,
		fSystemURL: a.SystemURL,
		fClientID:  s.sealField(key, fClientID, a.ClientID.Reveal()),
		fConnected: boolField(a.Connected),
		fActive:    boolField(a.Active),
		fFrozen:    boolField(a.Frozen),
		fCreatedAt: timeField(a.CreatedAt),
		fUpdatedAt: timeField(a.UpdatedAt),
	}
	if !a.APIKey.IsZero() {
		f[fAPIKey] = s.sealField(key, fAPIKey, a.APIKey.Reveal())
	}
	if !a.PendingAPIKey.IsZero() {
		f[fPendingKey] = s.sealField(key, fPendingKey, a.PendingAPIKey.Reveal())
		f[fPendingAt] = timeField(a.PendingSince)
	}
	if !a.ConnectedAt.IsZero() {
		f[fConnectedAt] = timeField(a.ConnectedAt)
	}
	if !a.ActivityAt.IsZero() {
		f[fActivityAt] = timeField(a.ActivityAt)
	}
	if len(a.Settings) > 0 {
		b, err := json.Marshal(a.Settings)
		if err != nil {
			return nil, fmt.Errorf("store: encode settings: %w", err)
		}
		f[fSettings] = s.sealField(key, fSettings, string(b))
	}
	return f, nil
}

// decode is encode's inverse.
func (s *Redis) decode(h map[string]string) (Account, error) {
	a := Account{ID: h[fID], SystemURL: h[fSystemURL]}
	if a.ID == "" {
		return Account{}, ErrNotFound
	}
	key := s.keys.account(a.ID)
	var err error
	open := func(field string) redact.Secret {
		v, ok := h[field]
		if !ok || err != nil {
			return ""
		}
		var pt string
		pt, err = s.openField(key, field, v)
		return redact.Secret(pt)
	}
	a.ClientID = open(fClientID)
	a.APIKey = open(fAPIKey)
	a.PendingAPIKey = open(fPendingKey)
	settings := open(fSettings)
	if err != nil {
		return Account{}, fmt.Errorf("store: account %s: %w", a.ID, err)
	}
	if !settings.IsZero() {
		if err := json.Unmarshal([]byte(settings.Reveal()), &a.Settings); err != nil {
			return Account{}, fmt.Errorf("store: account %s: settings: %w", a.ID, err)
		}
	}
	a.Connected = h[fConnected] == "1"
	a.Active = h[fActive] == "1"
	a.Frozen = h[fFrozen] == "1"
	a.CreatedAt = parseTime(h[fCreatedAt])
	a.UpdatedAt = parseTime(h[fUpdatedAt])
	a.ConnectedAt = parseTime(h[fConnectedAt])
	a.ActivityAt = parseTime(h[fActivityAt])
	a.PendingSince = parseTime(h[fPendingAt])
	return a, nil
}

func (s *Redis) sealField(key, field, plaintext string) string {
	return string(s.ring.Seal([]byte(plaintext), []byte(key+"#"+field)))
}

func (s *Redis) openField(key, field, sealed string) (string, error) {
	pt, _, err := s.ring.Open([]byte(sealed), []byte(key+"#"+field))
	return string(pt), err
}

func boolField(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Times are unix milliseconds: compact, and exact enough for an account.
func timeField(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixMilli(), 10)
}

func parseTime(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
