package handlers

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modulehub/simpleconnect/handlers/serviceapi"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/store"
)

var (
	errAdminAuth    = errors.New("admin: missing or wrong bearer token")
	errAdminDisable = errors.New("admin: API disabled")
	errAdminQuery   = errors.New("admin: bad query")
)

// requireBearer lets a request through when its Authorization header holds
// one of the configured tokens (several, for rotation). Every token is
// compared, in constant time, over fixed-size digests so the length of a
// token leaks nothing either. With no token configured the API does not
// exist. realm names the API in WWW-Authenticate; the id of the token that
// matched (its digest's first 12 hex digits, stable across rotation) is
// left in the context for audit (serviceapi.TokenIDKey).
func requireBearer(tokens []redact.Secret, realm string) echo.MiddlewareFunc {
	digests := make([][32]byte, 0, len(tokens))
	for _, t := range tokens {
		digests = append(digests, sha256.Sum256([]byte(t.Reveal())))
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if len(digests) == 0 {
				return errAdminDisable
			}
			auth := c.Request().Header.Get(echo.HeaderAuthorization)
			given, ok := strings.CutPrefix(auth, "Bearer ")
			if !ok || given == "" {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
				return errAdminAuth
			}
			got := sha256.Sum256([]byte(given))
			match, which := 0, 0
			for i, d := range digests {
				eq := subtle.ConstantTimeCompare(got[:], d[:])
				match |= eq
				which = subtle.ConstantTimeSelect(eq, i, which)
			}
			if match != 1 {
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`", error="invalid_token"`)
				return errAdminAuth
			}
			c.Set(serviceapi.TokenIDKey, hex.EncodeToString(digests[which][:6]))
			return next(c)
		}
	}
}

// adminAccount is an account as the admin API shows it: never an API key,
// never a clientId. An account that cannot be read shows only its id and
// the status "unreadable".
type adminAccount struct {
	ID            string            `json:"id"`
	SystemURL     string            `json:"system_url,omitempty"`
	Status        store.Status      `json:"status"`
	Active        bool              `json:"active"`
	Frozen        bool              `json:"frozen"`
	Connected     bool              `json:"connected"`
	Want          *adminState       `json:"want,omitempty"`
	InSync        bool              `json:"in_sync"`
	KeyPending    bool              `json:"key_pending"`
	PendingSince  *time.Time        `json:"pending_since,omitempty"`
	CreatedAt     *time.Time        `json:"created_at,omitempty"`
	UpdatedAt     *time.Time        `json:"updated_at,omitempty"`
	ConnectedAt   *time.Time        `json:"connected_at,omitempty"`
	ActivityAt    *time.Time        `json:"activity_at,omitempty"`
	SettingsNames []string          `json:"settings,omitempty"`
	MissingScopes []string          `json:"missing_scopes,omitempty"`
	KeyCheckedAt  *time.Time        `json:"key_checked_at,omitempty"`
	SealedWith    []string          `json:"sealed_with,omitempty"`
	Links         map[string]string `json:"links"`
}

// adminState is the state the account intends the CRM to have.
type adminState struct {
	Active bool `json:"active"`
	Frozen bool `json:"frozen"`
}

func toAdmin(a store.Account) adminAccount {
	links := map[string]string{"self": "/admin/api/accounts/" + a.ID}
	if a.Unreadable {
		return adminAccount{ID: a.ID, Status: store.StatusUnreadable, Links: links}
	}
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	names := make([]string, 0, len(a.Settings))
	for k := range a.Settings {
		names = append(names, k)
	}
	slices.Sort(names)
	return adminAccount{
		ID: a.ID, SystemURL: a.SystemURL, Status: a.Status(), Active: a.Active, Frozen: a.Frozen,
		Connected: a.Connected, Want: &adminState{a.Want.Active, a.Want.Frozen}, InSync: a.InSync(),
		KeyPending: !a.PendingAPIKey.IsZero(), PendingSince: opt(a.PendingSince),
		CreatedAt: opt(a.CreatedAt), UpdatedAt: opt(a.UpdatedAt), ConnectedAt: opt(a.ConnectedAt), ActivityAt: opt(a.ActivityAt),
		SettingsNames: names, MissingScopes: a.MissingScopes, KeyCheckedAt: opt(a.KeyCheckedAt), SealedWith: a.SealedWith, Links: links,
	}
}

type accountList struct {
	Accounts   []adminAccount `json:"accounts"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

// handleAdminList: GET /admin/api/accounts?status=&cursor=&limit=
func (s *server) handleAdminList(c echo.Context) error {
	q := store.ListQuery{Status: store.Status(c.QueryParam("status")), Cursor: c.QueryParam("cursor"), Limit: 50}
	if q.Status != "" && !slices.Contains(store.Statuses, q.Status) {
		return problemf(errAdminQuery, "status must be one of active, inactive, frozen, pending, key_revoked, scopes_missing")
	}
	if q.Cursor != "" && !validID(q.Cursor) {
		return problemf(errAdminQuery, "cursor is not one this API returned")
	}
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 200 {
			return problemf(errAdminQuery, "limit must be 1 to 200")
		}
		q.Limit = n
	}
	page, err := s.accounts.List(c.Request().Context(), q)
	if err != nil {
		return err
	}
	out := accountList{Accounts: make([]adminAccount, 0, len(page.Accounts)), NextCursor: page.NextCursor}
	for _, a := range page.Accounts {
		out.Accounts = append(out.Accounts, toAdmin(a))
	}
	return c.JSON(http.StatusOK, out)
}

// handleAdminGet: GET /admin/api/accounts/{id}
func (s *server) handleAdminGet(c echo.Context) error {
	id := c.Param("id")
	if !validID(id) {
		return store.ErrNotFound
	}
	acc, err := s.accounts.Get(c.Request().Context(), id)
	if err != nil && !errors.Is(err, store.ErrUnreadable) {
		return err
	}
	return c.JSON(http.StatusOK, toAdmin(acc))
}

// handleAdminReseal: POST /admin/api/reseal re-seals every stored
// credential with the current ENCRYPTION_KEY (docs/operations.md).
func (s *server) handleAdminReseal(c echo.Context) error {
	if s.sealing == nil {
		return errNotFound
	}
	rep, err := s.sealing.Reseal(c.Request().Context())
	if err != nil {
		return err
	}
	if rep.ByKey == nil {
		rep.ByKey = map[string]int64{}
	}
	s.log.InfoContext(c.Request().Context(), "admin resealed stored credentials", "resealed", rep.Resealed, "unreadable", rep.Unreadable)
	return c.JSON(http.StatusOK, rep)
}

// handleAdminDeactivate: POST /admin/api/accounts/{id}/deactivate[?local_only=true]
func (s *server) handleAdminDeactivate(c echo.Context) error {
	id := c.Param("id")
	if !validID(id) {
		return store.ErrNotFound
	}
	localOnly := c.QueryParam("local_only") == "true"
	acc, err := s.connector.Deactivate(c.Request().Context(), id, localOnly)
	if err != nil {
		return err
	}
	s.log.InfoContext(c.Request().Context(), "admin deactivated an account", "account_id", id, "local_only", localOnly)
	return c.JSON(http.StatusOK, toAdmin(acc))
}

// handleAdminResync: POST /admin/api/accounts/{id}/resync
func (s *server) handleAdminResync(c echo.Context) error {
	id := c.Param("id")
	if !validID(id) {
		return store.ErrNotFound
	}
	acc, err := s.connector.Resync(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toAdmin(acc))
}

type eventList struct {
	Events []store.Event `json:"events"`
	Next   string        `json:"next,omitempty"`
}

// handleAdminEvents: GET /admin/api/events?after=&limit= (oldest first).
func (s *server) handleAdminEvents(c echo.Context) error {
	limit := int64(100)
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return problemf(errAdminQuery, "limit must be 1 to 1000")
		}
		limit = int64(n)
	}
	after := c.QueryParam("after")
	if after != "" && !validStreamID(after) {
		return problemf(errAdminQuery, "after must be a stream id such as 1700000000000-0")
	}
	events, err := s.accounts.Events(c.Request().Context(), after, limit)
	if err != nil {
		return err
	}
	out := eventList{Events: events}
	if out.Events == nil {
		out.Events = []store.Event{}
	}
	if len(events) > 0 {
		out.Next = events[len(events)-1].StreamID
	}
	return c.JSON(http.StatusOK, out)
}

// validID accepts what store ids look like (ULIDs), so nothing else reaches
// a Redis key name.
func validID(id string) bool {
	if len(id) != 26 {
		return false
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

func validStreamID(id string) bool {
	ms, seq, ok := strings.Cut(id, "-")
	_, err1 := strconv.ParseUint(ms, 10, 64)
	_, err2 := strconv.ParseUint(seq, 10, 64)
	return ok && err1 == nil && err2 == nil
}

// detailed is an error whose safe detail the admin API shows.
type detailed struct {
	kind   error
	detail string
}

func (d detailed) Error() string  { return d.kind.Error() + ": " + d.detail }
func (d detailed) Unwrap() error  { return d.kind }
func (d detailed) Reason() string { return d.detail }

func problemf(kind error, detail string) error { return detailed{kind, detail} }
