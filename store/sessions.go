package store

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modulehub/simpleconnect/redact"
)

// Session is a signed-in browser on the account page. Only a digest of the
// session id is a key name; the CSRF token is sealed.
type Session struct {
	ID        redact.Secret // the cookie value; known only when created
	AccountID string
	CSRF      redact.Secret
	CreatedAt time.Time
}

// ValidCSRF compares a form's token with the session's in constant time.
func (s Session) ValidCSRF(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.CSRF.Reveal())) == 1
}

// CreateSession starts a session for an account that expires after ttl.
func (s *Redis) CreateSession(ctx context.Context, accountID string, ttl time.Duration) (Session, error) {
	sess := Session{
		ID: redact.Secret(randomToken()), AccountID: accountID,
		CSRF: redact.Secret(randomToken()), CreatedAt: s.now(),
	}
	key := s.keys.session(sess.ID.Reveal())
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "acct", accountID, "csrf", s.sealField(key, "csrf", sess.CSRF.Reveal()), "cat", timeField(sess.CreatedAt))
		p.Expire(ctx, key, ttl)
		return nil
	})
	if err != nil {
		return Session{}, err
	}
	return sess, nil
}

// GetSession returns a live session, or ErrNotFound when it expired or
// never existed.
func (s *Redis) GetSession(ctx context.Context, id redact.Secret) (Session, error) {
	if id.IsZero() {
		return Session{}, ErrNotFound
	}
	key := s.keys.session(id.Reveal())
	h, err := s.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return Session{}, err
	}
	if h["acct"] == "" {
		return Session{}, ErrNotFound
	}
	csrf, err := s.openField(key, "csrf", h["csrf"])
	if err != nil {
		return Session{}, ErrNotFound // sealed with a retired key: sign in again
	}
	return Session{ID: id, AccountID: h["acct"], CSRF: redact.Secret(csrf), CreatedAt: parseTime(h["cat"])}, nil
}

// DeleteSession ends a session (sign-out, or rotation at sign-in), and
// its draft with it.
func (s *Redis) DeleteSession(ctx context.Context, id redact.Secret) error {
	if id.IsZero() {
		return nil
	}
	return s.rdb.Del(ctx, s.keys.session(id.Reveal()), s.keys.draft(id.Reveal())).Err()
}

// Draft is a form of the account page that was sent but not saved (a
// refused value, an expired form), kept so that a retry, a language switch
// or a reload starts from what the owner typed. It belongs to one session:
// its key is named by the session's digest, it is sealed with that key
// name as additional data (it opens for no other session), it lives no
// longer than the session, and ending the session deletes it.
type Draft struct {
	Reason  string                   // why it was not saved: the handlers' word
	Values  map[string]string        // what the form held, by field name
	Flags   map[string]bool          // ticked boxes that are no values (a secret's "remove")
	Secrets map[string]redact.Secret // newly typed secrets, kept for the retry
}

// draftJSON is Draft as sealed: redact.Secret marshals to a placeholder,
// so the secrets travel as plain strings inside the ciphertext only.
type draftJSON struct {
	Reason  string            `json:"r"`
	Values  map[string]string `json:"v,omitempty"`
	Flags   map[string]bool   `json:"f,omitempty"`
	Secrets map[string]string `json:"s,omitempty"`
}

// SaveDraft keeps d for the session, replacing any earlier draft, for ttl
// or until the session ends, whichever is first. ErrNotFound: the session
// has ended.
func (s *Redis) SaveDraft(ctx context.Context, id redact.Secret, d Draft, ttl time.Duration) error {
	if id.IsZero() {
		return ErrNotFound
	}
	left, err := s.rdb.PTTL(ctx, s.keys.session(id.Reveal())).Result()
	if err != nil {
		return err
	}
	if left <= 0 { // -2: no session; -1 (no expiry) is never written
		return ErrNotFound
	}
	ttl = min(ttl, left)
	plain := draftJSON{Reason: d.Reason, Values: d.Values, Flags: d.Flags, Secrets: make(map[string]string, len(d.Secrets))}
	for name, v := range d.Secrets {
		plain.Secrets[name] = v.Reveal()
	}
	b, err := json.Marshal(plain)
	if err != nil {
		return err
	}
	key := s.keys.draft(id.Reveal())
	return s.rdb.Set(ctx, key, s.ring.Seal(b, []byte(key)), ttl).Err()
}

// GetDraft returns the session's draft, or ErrNotFound when there is none
// (never saved, expired, deleted, or sealed with a retired key).
func (s *Redis) GetDraft(ctx context.Context, id redact.Secret) (Draft, error) {
	if id.IsZero() {
		return Draft{}, ErrNotFound
	}
	key := s.keys.draft(id.Reveal())
	sealed, err := s.rdb.Get(ctx, key).Bytes()
	if isNil(err) {
		return Draft{}, ErrNotFound
	}
	if err != nil {
		return Draft{}, err
	}
	b, _, err := s.ring.Open(sealed, []byte(key))
	if err != nil {
		return Draft{}, ErrNotFound // a draft is a convenience: one that does not open is none
	}
	var plain draftJSON
	if err := json.Unmarshal(b, &plain); err != nil {
		return Draft{}, ErrNotFound
	}
	d := Draft{Reason: plain.Reason, Values: plain.Values, Flags: plain.Flags}
	if len(plain.Secrets) > 0 {
		d.Secrets = make(map[string]redact.Secret, len(plain.Secrets))
		for name, v := range plain.Secrets {
			d.Secrets[name] = redact.Secret(v)
		}
	}
	return d, nil
}

// DeleteDraft drops the session's draft (saved, or discarded by the owner).
func (s *Redis) DeleteDraft(ctx context.Context, id redact.Secret) error {
	if id.IsZero() {
		return nil
	}
	return s.rdb.Del(ctx, s.keys.draft(id.Reveal())).Err()
}
