package store

import (
	"context"
	"strconv"
	"time"
)

// Event types appended to the stream. docs/events.md documents the schema.
const (
	EventConnected       = "account.connected"
	EventReconnected     = "account.reconnected"
	EventActivity        = "account.activity"
	EventMoved           = "account.moved"
	EventDeactivated     = "account.deactivated"
	EventSettingsChanged = "account.settings_changed"
	// EventMoveRefused: an activity callback named a new address the
	// account did not follow (not a CRM cloud host, or the key does not work
	// there); the owner is asked to reconnect from the new address.
	EventMoveRefused = "account.move_refused"
	// EventRepaired: a register reached an account that could not be read;
	// it got a new clientId and lost what could not be opened.
	EventRepaired = "account.repaired"
	// EventKeyRevoked, EventScopesMissing: the key health check found the
	// shop's key refused, or without a scope the module needs;
	// EventKeyRestored: a check found it healthy again (a reconnect heals it
	// with account.reconnected).
	EventKeyRevoked    = "account.key_revoked"
	EventScopesMissing = "account.scopes_missing"
	EventKeyRestored   = "account.key_restored"
)

// Event is one entry of the account event stream. It never carries a
// credential.
type Event struct {
	StreamID          string    `json:"stream_id"`
	Type              string    `json:"type"`
	AccountID         string    `json:"account_id"`
	SystemURL         string    `json:"system_url"`
	Status            Status    `json:"status"`
	At                time.Time `json:"at"`
	KeyChanged        bool      `json:"key_changed,omitempty"`
	PreviousSystemURL string    `json:"previous_system_url,omitempty"`
	// Reader names the service token of a credentials.read (audit.go).
	Reader string `json:"reader,omitempty"`
}

// EventsStream is the Redis key of the event stream, for consumers.
func (s *Redis) EventsStream() string { return s.keys.events() }

// Events reads up to count events after the stream id after ("" or "-": from
// the start), oldest first.
func (s *Redis) Events(ctx context.Context, after string, count int64) ([]Event, error) {
	start := "-"
	if after != "" && after != "-" {
		start = "(" + after
	}
	msgs, err := s.rdb.XRangeN(ctx, s.keys.events(), start, "+", count).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		str := func(k string) string { v, _ := m.Values[k].(string); return v }
		at, _ := time.Parse(time.RFC3339Nano, str("at"))
		kc, _ := strconv.ParseBool(str("key_changed"))
		out = append(out, Event{
			StreamID: m.ID, Type: str("type"), AccountID: str("account_id"), SystemURL: str("system_url"),
			Status: Status(str("status")), At: at, KeyChanged: kc, PreviousSystemURL: str("previous_system_url"),
			Reader: str("reader"),
		})
	}
	return out, nil
}
