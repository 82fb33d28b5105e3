package store

import (
	"context"
	"crypto/subtle"
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

// DeleteSession ends a session (sign-out, or rotation at sign-in).
func (s *Redis) DeleteSession(ctx context.Context, id redact.Secret) error {
	if id.IsZero() {
		return nil
	}
	return s.rdb.Del(ctx, s.keys.session(id.Reveal())).Err()
}
