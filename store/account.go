package store

import (
	"errors"
	"time"

	"github.com/modulehub/simpleconnect/redact"
)

// Errors of the store.
var (
	ErrNotFound = errors.New("store: not found")
	// ErrConflict means concurrent writers kept changing the same account;
	// the caller may try again.
	ErrConflict = errors.New("store: too many concurrent changes, try again")
)

// Status is where an account is in its life.
type Status string

// The statuses an account can have.
const (
	// StatusPending: the first connection is under way (or was cut short);
	// the CRM has not yet accepted the module for this shop.
	StatusPending  Status = "pending"
	StatusActive   Status = "active"
	StatusInactive Status = "inactive"
	StatusFrozen   Status = "frozen"
)

// Statuses lists every Status, for validation and indexes.
var Statuses = []Status{StatusPending, StatusActive, StatusInactive, StatusFrozen}

// Account is one shop that connected the module.
type Account struct {
	// ID is immutable and not a credential: admin API, logs and events use it.
	ID string
	// ClientID is the credential the CRM sends back (account page, activity
	// callback). At least 256 random bits.
	ClientID redact.Secret
	// SystemURL is the shop's CRM address in canonical form.
	SystemURL string
	// APIKey is the key the CRM last accepted for this shop.
	APIKey redact.Secret
	// PendingAPIKey is a key a register is proving right now (empty when
	// none); it replaces APIKey only after the CRM accepted it.
	PendingAPIKey redact.Secret
	PendingSince  time.Time

	Connected bool // the CRM accepted the module at least once
	Active    bool
	Frozen    bool

	CreatedAt   time.Time
	UpdatedAt   time.Time
	ConnectedAt time.Time // last successful connection
	ActivityAt  time.Time // last activity callback from the CRM

	// Settings are the values of the module's connection variables.
	Settings map[string]string
}

// Status derives the account's status from its flags.
func (a Account) Status() Status {
	switch {
	case !a.Connected:
		return StatusPending
	case a.Frozen:
		return StatusFrozen
	case a.Active:
		return StatusActive
	default:
		return StatusInactive
	}
}
