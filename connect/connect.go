package connect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// Accounts is what connecting needs of the store.
type Accounts interface {
	BeginConnect(ctx context.Context, systemURL string, apiKey redact.Secret) (store.Account, error)
	CompleteConnect(ctx context.Context, id string, apiKey redact.Secret) (store.Account, error)
	AbortConnect(ctx context.Context, id string, apiKey redact.Secret) error
	InFlight(ctx context.Context, olderThan time.Time, limit int) ([]store.Account, error)
}

var (
	_ CRM      = (*crm.Client)(nil)
	_ Accounts = (*store.Redis)(nil)
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

// For returns the edit payload for an account.
func (m Module) For(acc store.Account, active bool) crm.Module {
	return crm.Module{
		Code: m.Code, IntegrationCode: m.IntegrationCode, Active: active, Freeze: acc.Frozen,
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

// Store is every store operation the service uses.
type Store interface {
	Accounts
	Managed
}

// Service connects shops.
type Service struct {
	crm      CRM
	accounts Accounts
	managed  Managed
	module   Module
	log      *slog.Logger
	// writeTimeout bounds store writes that must happen even when the
	// caller went away.
	writeTimeout time.Duration
	// OnSweep, when set, is told what every sweep did (metrics).
	OnSweep func(SweepResult)
}

// New returns a Service.
func New(c CRM, s Store, m Module, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{crm: c, accounts: s, managed: s, module: m, log: log, writeTimeout: 5 * time.Second}
}

// Module returns the module description.
func (s *Service) Module() Module { return s.module }

// Connect proves apiKey at systemURL (canonical) and records the outcome.
// First the CRM must know the key there and grant it every scope the module
// needs (GET /api/credentials): otherwise nothing is stored and no edit is
// sent. Then the attempt is written as pending, so a crash between the
// CRM's answer to the edit and our write leaves a record to finish, never an
// orphan; a known shop keeps its key until the CRM accepted the new one.
func (s *Service) Connect(ctx context.Context, systemURL string, apiKey redact.Secret) (store.Account, error) {
	if err := s.checkKey(ctx, systemURL, apiKey); err != nil {
		return store.Account{}, err
	}
	acc, err := s.accounts.BeginConnect(ctx, systemURL, apiKey)
	if err != nil {
		return store.Account{}, fmt.Errorf("begin connect: %w", err)
	}
	return s.finish(ctx, acc, apiKey)
}

// finish sends the edit for a pending attempt and records the answer.
func (s *Service) finish(ctx context.Context, acc store.Account, apiKey redact.Secret) (store.Account, error) {
	_, err := s.crm.EditModule(ctx, acc.SystemURL, apiKey, s.module.For(acc, true))
	// What follows must happen even if the caller hung up.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.writeTimeout)
	defer cancel()
	if err != nil {
		if Definitive(err) {
			if aerr := s.accounts.AbortConnect(wctx, acc.ID, apiKey); aerr != nil {
				s.log.Error("recording a refused connection failed; the sweeper will retry", "account_id", acc.ID, "err", aerr)
			}
		}
		return acc, err
	}
	done, err := s.accounts.CompleteConnect(wctx, acc.ID, apiKey)
	if err != nil {
		return acc, fmt.Errorf("complete connect: %w", err)
	}
	if acc.Connected && acc.APIKey != apiKey {
		s.log.Info("api key replaced after the CRM accepted the new one", "account_id", acc.ID, "system_url", acc.SystemURL)
	}
	return done, nil
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
