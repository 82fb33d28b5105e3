package connect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/store"
)

// CRM is what connecting needs of a shop's CRM.
type CRM interface {
	EditModule(ctx context.Context, systemURL string, apiKey redact.Secret, m crm.Module) (crm.Info, error)
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

// ErrNotConnected means the account has no key the CRM accepted yet.
var ErrNotConnected = errors.New("connect: the account was never connected")

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

// Connect proves apiKey at systemURL (canonical) with the module edit and
// records the outcome. The attempt is written as pending first: a crash
// between the CRM's answer and our write leaves a record to finish, never an
// orphan; a known shop keeps its key until the CRM accepted the new one.
func (s *Service) Connect(ctx context.Context, systemURL string, apiKey redact.Secret) (store.Account, error) {
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
		crm.ErrValidation, crm.ErrUnauthorized, crm.ErrForbidden, crm.ErrPaymentRequired,
		crm.ErrMethodNotFound, crm.ErrNoAccount, crm.ErrBlocked,
	} {
		if errors.Is(err, final) {
			return true
		}
	}
	return false
}
