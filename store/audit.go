package store

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// EventCredentialsRead: a module's service read the account's API key
// through the service API. Reader names which service token did.
const EventCredentialsRead = "credentials.read"

// NoteCredentialsRead appends a credentials.read event for acc, naming the
// reader (a service token's digest prefix, never a token), to the event
// stream. The caller hands the key over only once this succeeded: every
// read is on the record. The event never carries the key.
func (s *Redis) NoteCredentialsRead(ctx context.Context, acc Account, reader string) error {
	return s.rdb.XAdd(ctx, &redis.XAddArgs{
		Stream: s.keys.events(), MaxLen: s.maxEvents, Approx: true,
		Values: []string{
			"type", EventCredentialsRead, "account_id", acc.ID, "system_url", acc.SystemURL,
			"status", string(acc.Status()), "at", s.now().UTC().Format(time.RFC3339Nano), "reader", reader,
		},
	}).Err()
}
