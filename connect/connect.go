package connect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/store"
)

// CRM is what connecting needs of a shop's CRM.
type CRM interface {
	EditModule(ctx context.Context, systemURL string, apiKey redact.Secret, m crm.Module) (crm.Info, error)
	FetchCredentials(ctx context.Context, systemURL string, apiKey redact.Secret) (crm.Credentials, error)
}

// Store is what connecting needs of the store. Every write that follows a
// talk with a shop's CRM happens under the account's lease, so the order
// the CRM sees edits in is the order they are recorded in.
type Store interface {
	Get(ctx context.Context, id string) (store.Account, error)
	BeginConnect(ctx context.Context, systemURL string, apiKey redact.Secret) (store.Attempt, error)
	Acquire(ctx context.Context, id string) (store.Account, store.Lease, []string, error)
	Release(ctx context.Context, l store.Lease) error
	Record(ctx context.Context, l store.Lease, read store.Account, sy store.Sync) (store.Account, error)
	Abort(ctx context.Context, l store.Lease, read store.Account, seq int64, keepIntention bool) (store.AbortOutcome, error)
	Abandon(ctx context.Context, l store.Lease) error
	Backoff(ctx context.Context, l store.Lease, next time.Time, unsure bool) error
	Intend(ctx context.Context, l store.Lease, read store.Account, st *store.State) error
	SetActivity(ctx context.Context, id string, st store.State, l store.Lease, changes ...store.Change) (store.Account, error)
	Repair(ctx context.Context, l store.Lease, bad []string) (acc store.Account, newClientID bool, err error)
	Due(ctx context.Context, now time.Time, limit int) ([]string, error)
	LeaseTTL() time.Duration
}

var (
	_ CRM   = (*crm.Client)(nil)
	_ Store = (*store.Redis)(nil)
)

// Module is the module's own description, the same for every shop.
type Module struct {
	Code            string
	IntegrationCode string
	Name            string
	Logo            string
	BaseURL         string // the service's public URL, no trailing slash
	// Scopes are the API-key permissions the module needs (MODULE_SCOPES);
	// a key without one of them is refused before anything is stored.
	Scopes []string
}

// edit is the one place an edit's payload is built: the module's
// description, the account's clientId and the state the CRM should have.
func (m Module) edit(acc store.Account, st store.State) crm.Module {
	return crm.Module{
		Code: m.Code, IntegrationCode: m.IntegrationCode, Active: st.Active, Freeze: st.Frozen,
		Name: m.Name, Logo: m.Logo, ClientID: acc.ClientID,
		BaseURL: m.BaseURL, AccountURL: m.BaseURL + "/account",
		Actions: map[string]string{"activity": "/activity"},
	}
}

// Errors of Connect and friends.
var (
	// ErrNotConnected means the account has no key the CRM accepted yet.
	ErrNotConnected = errors.New("connect: the account was never connected")
	// ErrUnknownKey means the CRM at the shop's address does not know the key.
	ErrUnknownKey = errors.New("connect: the CRM does not know this API key")
	// ErrMissingScopes means the key lacks permissions the module needs;
	// the error's Reason names them.
	ErrMissingScopes = errors.New("connect: the API key lacks required scopes")
	// ErrMoveRefused means an activity callback named a new shop address
	// that the account did not follow: the owner reconnects from there.
	ErrMoveRefused = errors.New("connect: the shop's new address was not followed")
	// ErrBusy means another exchange with the shop's CRM (a register on
	// another replica, the sweeper) held the account for longer than the
	// caller could wait: this call sent nothing, and trying again later
	// works. Not a CRM failure: the CRM was never asked.
	ErrBusy = errors.New("connect: another exchange with this shop's CRM is still under way")
)

// ScopeError names the scopes a key lacks.
type ScopeError struct{ Missing []string }

func (e *ScopeError) Error() string  { return ErrMissingScopes.Error() + ": " + e.Reason() }
func (e *ScopeError) Unwrap() error  { return ErrMissingScopes }
func (e *ScopeError) Reason() string { return strings.Join(e.Missing, ", ") }

// checkKey asks the CRM what the key may do. A key the CRM refuses there is
// unknown (it may be real elsewhere: the token does not cover systemUrl). A
// reply without "scopes" (an older CRM) proves the key but cannot be
// checked further; the edit then proves integration access.
func (s *Service) checkKey(ctx context.Context, systemURL string, apiKey redact.Secret) error {
	creds, err := s.crm.FetchCredentials(ctx, systemURL, apiKey)
	if errors.Is(err, crm.ErrUnauthorized) || errors.Is(err, crm.ErrForbidden) {
		return fmt.Errorf("%w: %w", ErrUnknownKey, err)
	}
	if err != nil {
		return err
	}
	if creds.Scopes == nil {
		return nil
	}
	var missing []string
	for _, want := range s.module.Scopes {
		if !slices.Contains(creds.Scopes, want) {
			missing = append(missing, want)
		}
	}
	if len(missing) > 0 {
		return &ScopeError{Missing: missing}
	}
	return nil
}

// Service connects shops and keeps each shop's CRM in step with its
// account.
type Service struct {
	crm    CRM
	store  Store
	module Module
	log    *slog.Logger
	locks  *keyedLocks
	now    func() time.Time
	// writeTimeout bounds store writes that must happen even when the
	// caller went away.
	writeTimeout time.Duration
	sweep        SweepOptions
	pacer        Pacer // nil: key checks are not paced
	// OnSweep, when set, is told what every sweep did (metrics).
	OnSweep func(SweepResult)
}

// New returns a Service.
func New(c CRM, s Store, m Module, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{
		crm: c, store: s, module: m, log: log, locks: newKeyedLocks(),
		now: func() time.Time { return time.Now().UTC() }, writeTimeout: 5 * time.Second,
		sweep: SweepOptions{}.withDefaults(),
	}
}

// SetClock replaces the clock the sweeper judges ages by (tests).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

// Module returns the module description.
func (s *Service) Module() Module { return s.module }

// Connect proves apiKey at systemURL (canonical) and records the outcome.
// First the CRM must know the key there and grant it every scope the module
// needs (GET /api/credentials): otherwise nothing is stored and no edit is
// sent. Then the attempt is recorded as the account's newest, so a crash
// between the CRM's answer and our write leaves a record to finish, never
// an orphan; a known shop keeps its key until the CRM accepted the new one.
// The edit goes out when no other exchange with the shop's CRM is under
// way (a double click waits its turn, it is never refused), with the
// account's intention: switched on, unless the owner or the CRM switched
// it off since.
func (s *Service) Connect(ctx context.Context, systemURL string, apiKey redact.Secret) (store.Account, error) {
	if err := s.checkKey(ctx, systemURL, apiKey); err != nil {
		return store.Account{}, err
	}
	unlock, err := s.locks.lock(ctx, systemURL)
	if err != nil {
		return store.Account{}, err
	}
	defer unlock()
	at, err := s.store.BeginConnect(ctx, systemURL, apiKey)
	if err != nil {
		return store.Account{}, fmt.Errorf("begin connect: %w", err)
	}
	acc, lease, bad := at.Account, at.Lease, at.Bad
	if !lease.Held() {
		if acc, lease, bad, err = s.waitLease(ctx, acc.ID); err != nil {
			return at.Account, err // the attempt stays pending: the sweeper finishes it
		}
	}
	if len(bad) > 0 {
		wctx, cancel := s.writeCtx(ctx)
		defer cancel()
		var fresh bool
		if acc, fresh, err = s.store.Repair(wctx, lease, bad); err != nil {
			s.release(ctx, lease)
			return at.Account, fmt.Errorf("repair account: %w", err)
		}
		s.log.Warn("a register repaired an account that could not be read", "account_id", acc.ID, "unreadable_fields", bad, "new_client_id", fresh)
	}
	return s.prove(ctx, acc, lease, at.Seq, apiKey, at.Account.Edits)
}

// prove sends, under lease, the edit for attempt seq with its key, and
// records the answer: the key is the account's once the CRM accepted it
// (if no newer attempt's key was accepted first); a definitive refusal
// ends the attempt; anything else leaves it to the sweeper.
func (s *Service) prove(ctx context.Context, acc store.Account, lease store.Lease, seq int64, key redact.Secret, editsBefore int64) (store.Account, error) {
	// While this attempt waited its turn, another one proved this very key
	// and the CRM has the account's intention: a double click, already done.
	if acc.Edits > editsBefore && acc.Connected && acc.APIKey.Equal(key) && acc.InSync() {
		return s.settle(ctx, lease, acc, store.Sync{Sent: acc.State(), FromVersion: acc.SyncedVersion, Proved: key, ProvedSeq: seq})
	}
	want := acc.Want
	_, err := s.crm.EditModule(ctx, acc.SystemURL, key, s.module.edit(acc, want))
	if err != nil {
		wctx, cancel := s.writeCtx(ctx)
		defer cancel()
		if Definitive(err) {
			// This attempt's only edit was refused: the CRM has nothing of it.
			if _, aerr := s.store.Abort(wctx, lease, acc, seq, false); aerr != nil {
				s.log.Error("recording a refused connection failed; the sweeper will retry", "account_id", acc.ID, "err", aerr)
			}
		} else {
			// The attempt stays pending for the sweeper; and the edit may
			// have reached the CRM after anything recorded later (a newer
			// attempt may end this one), so the account is marked unsure.
			s.unanswered(ctx, lease, acc, nil, err)
		}
		return acc, err
	}
	return s.settle(ctx, lease, acc, store.Sync{
		Sent: want, FromVersion: acc.WantVersion, Proved: key, ProvedSeq: seq, Edited: true,
		Changes: []store.Change{connected(acc, key, seq)},
	})
}

// connected is the event for a key the CRM accepted.
func connected(acc store.Account, key redact.Secret, seq int64) store.Change {
	if !acc.Connected {
		return store.Change{Type: store.EventConnected}
	}
	applied := seq > acc.KeySeq
	return store.Change{Type: store.EventReconnected, KeyChanged: applied && !acc.APIKey.Equal(key)}
}

// settle records an exchange under lease. If the account's intention
// changed while the edit was on its way (an activity callback), the CRM is
// told the latest one, a few times at most; what remains is the sweeper's.
func (s *Service) settle(ctx context.Context, lease store.Lease, read store.Account, sy store.Sync) (store.Account, error) {
	acc, err := s.record(ctx, lease, read, sy)
	if err != nil {
		if !errors.Is(err, store.ErrLeaseLost) {
			s.release(ctx, lease)
		}
		return read, fmt.Errorf("record: %w", err)
	}
	for range 3 {
		if acc.InSync() || ctx.Err() != nil {
			break
		}
		want := acc.Want
		if _, err := s.crm.EditModule(ctx, acc.SystemURL, acc.APIKey, s.module.edit(acc, want)); err != nil {
			s.unanswered(ctx, lease, acc, nil, err)
			return acc, nil // what the caller asked for is recorded; the sweeper carries on
		}
		next, err := s.record(ctx, lease, acc, store.Sync{Sent: want, FromVersion: acc.WantVersion, Edited: true})
		if err != nil {
			return acc, nil // what the caller asked for is recorded; the sweeper carries on
		}
		acc = next
	}
	if !acc.InSync() {
		s.release(ctx, lease) // the account is in the sweeper's queue
	}
	return acc, nil
}

func (s *Service) record(ctx context.Context, lease store.Lease, read store.Account, sy store.Sync) (store.Account, error) {
	wctx, cancel := s.writeCtx(ctx)
	defer cancel()
	return s.store.Record(wctx, lease, read, sy)
}

// waitLease takes an account's lease, waiting while another replica (or
// the sweeper) talks to the shop's CRM: never longer than the caller's
// deadline or one lease's life, after which it is ErrBusy.
func (s *Service) waitLease(ctx context.Context, id string) (store.Account, store.Lease, []string, error) {
	caller := ctx
	ctx, cancel := context.WithTimeout(ctx, s.store.LeaseTTL())
	defer cancel()
	wait := 2 * time.Millisecond
	for {
		acc, lease, bad, err := s.store.Acquire(ctx, id)
		if err != nil && ctx.Err() != nil && caller.Err() == nil {
			// The wait's own bound ended the call (a slow Redis): busy, not
			// a store failure. Had the lease been taken, it expires by
			// itself.
			return store.Account{}, store.Lease{}, nil, ErrBusy
		}
		if !errors.Is(err, store.ErrLeaseHeld) {
			return acc, lease, bad, err
		}
		t := time.NewTimer(wait/2 + rand.N(wait))
		select {
		case <-ctx.Done():
			t.Stop()
			return store.Account{}, store.Lease{}, nil, ErrBusy
		case <-t.C:
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// lockAccount serialises, in this process, everything that talks to one
// shop's CRM, then takes the account's lease (which serialises replicas).
func (s *Service) lockAccount(ctx context.Context, acc store.Account) (store.Account, store.Lease, func(), error) {
	unlock, err := s.locks.lock(ctx, acc.SystemURL)
	if err != nil {
		return acc, store.Lease{}, nil, err
	}
	fresh, lease, bad, err := s.waitLease(ctx, acc.ID)
	if err != nil {
		unlock()
		return acc, store.Lease{}, nil, err
	}
	if len(bad) > 0 {
		s.release(ctx, lease)
		unlock()
		return acc, store.Lease{}, nil, fmt.Errorf("%w: account %s", store.ErrUnreadable, acc.ID)
	}
	return fresh, lease, unlock, nil
}

func (s *Service) release(ctx context.Context, l store.Lease) {
	wctx, cancel := s.writeCtx(ctx)
	defer cancel()
	if err := s.store.Release(wctx, l); err != nil {
		s.log.Warn("releasing an account lease failed; it expires by itself", "account_id", l.AccountID, "err", err)
	}
}

// writeCtx is for writes that must happen even if the caller hung up.
func (s *Service) writeCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), s.writeTimeout)
}

// Definitive reports whether a CRM failure is final for this key, as
// opposed to one worth trying again later (unavailable, rate limited, an
// unexpected answer, our own errors).
func Definitive(err error) bool {
	for _, final := range []error{
		ErrUnknownKey, ErrMissingScopes, crm.ErrValidation, crm.ErrUnauthorized, crm.ErrForbidden, crm.ErrPaymentRequired,
		crm.ErrMethodNotFound, crm.ErrNoAccount, crm.ErrBlocked,
	} {
		if errors.Is(err, final) {
			return true
		}
	}
	return false
}
