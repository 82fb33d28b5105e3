package store

import (
	"errors"
	"time"

	"github.com/modulehub/simpleconnect/redact"
)

// Errors of the store.
var (
	ErrNotFound = errors.New("store: not found")
	// ErrUnreadable means an account's record exists but cannot be opened:
	// corrupted, or sealed with a key ENCRYPTION_KEY no longer lists. Lists,
	// the sweeper and reseal skip such an account and count it; every other
	// account keeps working.
	ErrUnreadable = errors.New("store: account cannot be read (corrupt, or sealed with a key that is not configured)")
	// ErrLeaseHeld means another request or replica is talking to this
	// shop's CRM right now; the caller waits its turn or moves on.
	ErrLeaseHeld = errors.New("store: the account is being synced by someone else")
	// ErrLeaseLost means the caller's lease ran out and another holder took
	// the account: what the caller learnt is not recorded.
	ErrLeaseLost = errors.New("store: the lease on the account was lost")
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
	// StatusKeyRevoked: the shop's CRM no longer accepts the account's API
	// key (the key health check got 401/403); the owner reconnects.
	StatusKeyRevoked Status = "key_revoked"
	// StatusScopesMissing: the key lost permissions the module needs.
	StatusScopesMissing Status = "scopes_missing"
	// StatusUnreadable is shown for an account whose record cannot be
	// opened (only lists and the admin API carry it; it is never indexed).
	StatusUnreadable Status = "unreadable"
)

// Statuses lists every indexed Status, for validation and indexes.
var Statuses = []Status{StatusPending, StatusActive, StatusInactive, StatusFrozen, StatusKeyRevoked, StatusScopesMissing}

// KeyHealth is what the last check of an account's key at its CRM found.
type KeyHealth string

// Key health outcomes.
const (
	KeyHealthy       KeyHealth = ""
	KeyRevoked       KeyHealth = KeyHealth(StatusKeyRevoked)
	KeyScopesMissing KeyHealth = KeyHealth(StatusScopesMissing)
)

// State is the module's switch in a shop's CRM: on or off, frozen or not.
type State struct {
	Active bool
	Frozen bool
}

// Account is one shop that connected the module.
//
// Two states are kept apart. Active and Frozen are what the shop's CRM has:
// the last state it accepted from an edit, or told us in an activity
// callback. Want is what the CRM should have: the owner's and the CRM's
// latest intention. They differ only while an edit is on its way (or was
// cut short and waits for the sweeper); WantVersion and SyncedVersion say
// which intention the CRM has accepted.
type Account struct {
	// ID is immutable and not a credential: admin API, logs and events use it.
	ID string
	// ClientID is the credential the CRM sends back (account page, activity
	// callback). At least 256 random bits; never changes.
	ClientID redact.Secret
	// SystemURL is the shop's CRM address in canonical form.
	SystemURL string
	// APIKey is the key the CRM last accepted for this shop, and KeySeq the
	// attempt that proved it.
	APIKey redact.Secret
	KeySeq int64

	// PendingAPIKey is the key of the newest connection attempt (PendingSeq)
	// while the CRM has not accepted it yet; empty when none is under way.
	PendingAPIKey redact.Secret
	PendingSeq    int64
	PendingSince  time.Time

	Connected bool // the CRM accepted the module at least once
	Active    bool // the CRM has the module switched on
	Frozen    bool // the CRM froze the module (billing)

	Want          State
	WantVersion   int64
	SyncedVersion int64
	// Edits counts the edits the CRM accepted for this account.
	Edits int64
	// Tries counts the sweeper's failed tries of the current attempt or sync.
	Tries int
	// Unsure: an edit got no clear answer, so the CRM's state is unknown
	// until an edit is accepted.
	Unsure bool

	// KeyHealth is what the last check of APIKey found (KeyHealthy until
	// a check says otherwise); MissingScopes names what the key lost.
	KeyHealth     KeyHealth
	MissingScopes []string
	KeyCheckedAt  time.Time

	CreatedAt   time.Time
	UpdatedAt   time.Time
	ConnectedAt time.Time // last successful connection
	ActivityAt  time.Time // last activity callback from the CRM

	// Settings are the values of the module's connection variables.
	Settings map[string]string

	// SealedWith are the ids (hex) of the encryption keys that sealed this
	// record's fields.
	SealedWith []string
	// Unreadable is set, with only ID filled in, for a record that could
	// not be opened (lists and bulk reads).
	Unreadable bool

	// raw is the record as read, to re-seal what an older key sealed.
	raw map[string]string
}

// State is what the CRM has.
func (a Account) State() State { return State{Active: a.Active, Frozen: a.Frozen} }

// InSync reports whether the CRM has accepted the account's latest
// intention.
func (a Account) InSync() bool {
	return !a.Unsure && (a.SyncedVersion >= a.WantVersion || a.Want == a.State())
}

// Status derives the account's status from its flags.
func (a Account) Status() Status {
	switch {
	case a.Unreadable:
		return StatusUnreadable
	case !a.Connected:
		return StatusPending
	case a.KeyHealth != KeyHealthy:
		return Status(a.KeyHealth)
	case a.Frozen:
		return StatusFrozen
	case a.Active:
		return StatusActive
	default:
		return StatusInactive
	}
}
