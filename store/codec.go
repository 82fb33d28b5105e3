package store

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/modulehub/simpleconnect/redact"
)

// Hash field names of an account; short, as every account carries them.
// The Lua scripts (scripts.go) use the same names.
//
// Format 1 (before attempt ids) had no fV and none of the fields marked
// "v2"; decode reads such a record as an account whose intention equals
// its state, with no attempt numbers, and the next write upgrades it.
const (
	fVersion     = "v" // v2: record format, "2"
	fID          = "id"
	fSystemURL   = "url"
	fClientID    = "cid"  // sealed
	fAPIKey      = "key"  // sealed
	fKeySeq      = "kseq" // v2: attempt that proved key
	fPendingKey  = "pkey" // sealed
	fPendingSeq  = "pseq" // v2: the pending attempt
	fPendingAt   = "pat"
	fAttemptSeq  = "aseq" // v2: last attempt number given out
	fConnected   = "con"
	fActive      = "act"
	fFrozen      = "frz"
	fWantActive  = "wact" // v2
	fWantFrozen  = "wfrz" // v2
	fWantVer     = "wv"   // v2
	fSyncedVer   = "sv"   // v2
	fEdits       = "edits"
	fTries       = "tries"
	fUnsure      = "unsure" // v2
	fKeyHealth   = "kh"     // v2: "", "key_revoked", "scopes_missing"
	fMissing     = "kmiss"  // v2: comma-separated scopes the key lost
	fKeyChecked  = "kcat"   // v2: last key check
	fCreatedAt   = "cat"
	fUpdatedAt   = "uat"
	fConnectedAt = "nat"
	fActivityAt  = "aat"
	fSettings    = "set"  // sealed JSON
	fSealedWith  = "kids" // v2: ids of the keys that sealed the fields above
)

// sealedFields are the fields holding sealed values, in a fixed order.
var sealedFields = []string{fClientID, fAPIKey, fPendingKey, fSettings}

// decode opens an account record. A field that cannot be opened makes the
// account unreadable: decode returns what it could read and the names of
// the fields it could not, and the caller decides (most report
// ErrUnreadable; a register repairs the account).
func (s *Redis) decode(h map[string]string) (Account, []string) {
	a := Account{ID: h[fID], SystemURL: h[fSystemURL], raw: h}
	key := s.keys.account(a.ID)
	var bad []string
	open := func(field string) redact.Secret {
		v, ok := h[field]
		if !ok {
			return ""
		}
		pt, err := s.openField(key, field, v)
		if err != nil {
			bad = append(bad, field)
			return ""
		}
		return redact.Secret(pt)
	}
	a.ClientID = open(fClientID)
	a.APIKey = open(fAPIKey)
	a.PendingAPIKey = open(fPendingKey)
	if settings := open(fSettings); !settings.IsZero() {
		if err := json.Unmarshal([]byte(settings.Reveal()), &a.Settings); err != nil {
			bad = append(bad, fSettings)
			a.Settings = nil
		}
	}
	if a.ClientID.IsZero() && !contains(bad, fClientID) {
		bad = append(bad, fClientID) // every account has one
	}
	a.Connected = h[fConnected] == "1"
	a.Active = h[fActive] == "1"
	a.Frozen = h[fFrozen] == "1"
	a.Want = a.State()
	if v, ok := h[fWantActive]; ok {
		a.Want.Active = v == "1"
	}
	if v, ok := h[fWantFrozen]; ok {
		a.Want.Frozen = v == "1"
	}
	a.WantVersion = parseInt(h[fWantVer])
	a.SyncedVersion = parseInt(h[fSyncedVer])
	a.KeySeq = parseInt(h[fKeySeq])
	a.PendingSeq = parseInt(h[fPendingSeq])
	a.Edits = parseInt(h[fEdits])
	a.Tries = int(parseInt(h[fTries]))
	a.Unsure = h[fUnsure] == "1"
	a.KeyHealth = KeyHealth(h[fKeyHealth])
	if m := h[fMissing]; m != "" {
		a.MissingScopes = strings.Split(m, ",")
	}
	a.KeyCheckedAt = parseTime(h[fKeyChecked])
	a.CreatedAt = parseTime(h[fCreatedAt])
	a.UpdatedAt = parseTime(h[fUpdatedAt])
	a.ConnectedAt = parseTime(h[fConnectedAt])
	a.ActivityAt = parseTime(h[fActivityAt])
	a.PendingSince = parseTime(h[fPendingAt])
	if _, ok := h[fPendingKey]; ok && h[fVersion] == "" && h[fPendingSeq] == "" {
		a.PendingSeq = 1 // format 1: as the scripts' upgrade numbers it
	}
	if a.PendingAPIKey.IsZero() && !contains(bad, fPendingKey) {
		a.PendingSeq, a.PendingSince = 0, time.Time{}
	}
	if k := h[fSealedWith]; k != "" {
		a.SealedWith = strings.Split(k, ",")
	} else {
		a.SealedWith = sealedWith(h)
	}
	return a, bad
}

// decodeStrict is decode for readers: an account with a field that cannot
// be opened is ErrUnreadable, naming the id (never a value).
func (s *Redis) decodeStrict(h map[string]string) (Account, error) {
	if h[fID] == "" {
		return Account{}, ErrNotFound
	}
	a, bad := s.decode(h)
	if len(bad) > 0 {
		s.noteUnreadable(a.ID, bad)
		return Account{ID: a.ID, Unreadable: true}, fmt.Errorf("%w: account %s (%s)", ErrUnreadable, a.ID, strings.Join(bad, ", "))
	}
	return a, nil
}

// sealedWith reads the key ids out of the sealed fields' headers, as the
// scripts do (seal's layout: version byte, then the 4-byte key id).
func sealedWith(h map[string]string) []string {
	var ids []string
	for _, f := range sealedFields {
		if id, ok := sealKeyID(h[f]); ok && !contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids
}

func sealKeyID(v string) (string, bool) {
	if len(v) < 5 {
		return "", false
	}
	return fmt.Sprintf("%02x%02x%02x%02x", v[1], v[2], v[3], v[4]), true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (s *Redis) sealField(key, field, plaintext string) string {
	return string(s.ring.Seal([]byte(plaintext), []byte(key+"#"+field)))
}

func (s *Redis) openField(key, field, sealed string) (string, error) {
	pt, _, err := s.ring.Open([]byte(sealed), []byte(key+"#"+field))
	return string(pt), err
}

// sealSettings seals an account's settings as one JSON value.
func (s *Redis) sealSettings(id string, settings map[string]string) (string, error) {
	if len(settings) == 0 {
		return "", nil
	}
	b, err := json.Marshal(settings)
	if err != nil {
		return "", fmt.Errorf("store: encode settings: %w", err)
	}
	return s.sealField(s.keys.account(id), fSettings, string(b)), nil
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

func parseInt(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// hashOf turns HGETALL's flat reply, as a script returns it, into a map.
func hashOf(v any) map[string]string {
	list, _ := v.([]any)
	h := make(map[string]string, len(list)/2)
	for i := 0; i+1 < len(list); i += 2 {
		k, _ := list[i].(string)
		val, _ := list[i+1].(string)
		h[k] = val
	}
	return h
}
