package serviceclient

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Event is one entry of the account event stream (docs/events.md).
type Event struct {
	// ID is the stream entry's id.
	ID                string
	Type              string
	AccountID         string
	SystemURL         string
	Status            string
	At                time.Time
	KeyChanged        bool
	PreviousSystemURL string
	// Fields are all of the entry's fields, those above included.
	Fields map[string]string
}

// Event types (docs/events.md).
const (
	EventConnected       = "account.connected"
	EventReconnected     = "account.reconnected"
	EventActivity        = "account.activity"
	EventMoved           = "account.moved"
	EventDeactivated     = "account.deactivated"
	EventSettingsChanged = "account.settings_changed"
	EventCredentialsRead = "credentials.read"
)

// EventsStream is the stream's key for a REDIS_KEY_PREFIX.
func EventsStream(prefix string) string { return "{" + prefix + "}:events" }

// Consumer reads the account event stream as one member of a consumer
// group: each entry goes to one member of the group, is handled, then
// acknowledged. Delivery is at least once: an entry whose handling did
// not finish (a crash, an error) stays pending and is handed again, first
// thing, when Run starts next (the same consumer name), or claimed by
// another member once it has been idle for ClaimIdle.
type Consumer struct {
	rdb    redis.UniversalClient
	stream string
	group  string
	name   string
	// Batch is how many entries one read takes (default 10); Block how
	// long a read waits for new ones (default 5 s); ClaimIdle after how
	// long another member's pending entry is taken over (default 1 min).
	Batch     int64
	Block     time.Duration
	ClaimIdle time.Duration
	// Start is where a new group starts reading: "$" (default) for entries
	// added from now on, "0" for the whole stream.
	Start string
}

// NewConsumer returns the consumer name of group on the stream of the
// service whose REDIS_KEY_PREFIX is prefix. Give every worker process a
// name of its own that it keeps across restarts (a host name, a pod
// name): that is how it finds its unfinished entries again.
func NewConsumer(rdb redis.UniversalClient, prefix, group, name string) *Consumer {
	return &Consumer{rdb: rdb, stream: EventsStream(prefix), group: group, name: name,
		Batch: 10, Block: 5 * time.Second, ClaimIdle: time.Minute, Start: "$"}
}

// Handler handles one event. A nil error acknowledges it; an error stops
// Run and leaves the event pending, to be handed again.
type Handler func(ctx context.Context, ev Event) error

// Run creates the group if needed, then hands events to handle until ctx
// ends (nil) or handle fails (its error; the event stays pending). First
// its own pending entries (what a crash left), then entries other members
// left idle, then new ones.
func (c *Consumer) Run(ctx context.Context, handle Handler) error {
	err := c.rdb.XGroupCreateMkStream(ctx, c.stream, c.group, c.Start).Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("serviceclient: create group %s: %w", c.group, err)
	}
	// Own pending entries: "0" reads this consumer's history, not new ones.
	for {
		n, err := c.read(ctx, "0", 0, handle)
		if err != nil || n == 0 {
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				return err
			}
			break
		}
	}
	lastClaim := time.Time{}
	for ctx.Err() == nil {
		if time.Since(lastClaim) >= c.ClaimIdle/2 {
			if err := c.claim(ctx, handle); err != nil {
				return c.stopped(ctx, err)
			}
			lastClaim = time.Now()
		}
		if _, err := c.read(ctx, ">", c.Block, handle); err != nil {
			return c.stopped(ctx, err)
		}
	}
	return nil
}

func (c *Consumer) stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// read reads from id ("0": own pending, ">": new) and handles what came.
func (c *Consumer) read(ctx context.Context, id string, block time.Duration, handle Handler) (int, error) {
	args := &redis.XReadGroupArgs{Group: c.group, Consumer: c.name, Streams: []string{c.stream, id}, Count: c.Batch, Block: block}
	if block == 0 {
		args.Block = -1 // no BLOCK: answer at once
	}
	streams, err := c.rdb.XReadGroup(ctx, args).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("serviceclient: read events: %w", err)
	}
	n := 0
	for _, s := range streams {
		for _, m := range s.Messages {
			if err := c.handle(ctx, m, handle); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// claim takes over entries other members left pending longer than
// ClaimIdle (a crashed worker), and handles them.
func (c *Consumer) claim(ctx context.Context, handle Handler) error {
	start := "0-0"
	for {
		msgs, next, err := c.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: c.stream, Group: c.group, Consumer: c.name, MinIdle: c.ClaimIdle, Start: start, Count: c.Batch,
		}).Result()
		if err != nil {
			return fmt.Errorf("serviceclient: claim idle events: %w", err)
		}
		for _, m := range msgs {
			if err := c.handle(ctx, m, handle); err != nil {
				return err
			}
		}
		if next == "0-0" || next == "" {
			return nil
		}
		start = next
	}
}

func (c *Consumer) handle(ctx context.Context, m redis.XMessage, handle Handler) error {
	if m.Values != nil { // nil: trimmed from the stream (MAXLEN) while pending; nothing to handle
		if err := handle(ctx, decode(m)); err != nil {
			return fmt.Errorf("serviceclient: handling event %s: %w", m.ID, err)
		}
	}
	// Handled is handled, even when a shutdown began meanwhile: the
	// acknowledgement outlives the run's context (briefly).
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := c.rdb.XAck(actx, c.stream, c.group, m.ID).Err(); err != nil {
		return fmt.Errorf("serviceclient: ack event %s: %w", m.ID, err)
	}
	return nil
}

func decode(m redis.XMessage) Event {
	f := make(map[string]string, len(m.Values))
	for k, v := range m.Values {
		s, _ := v.(string)
		f[k] = s
	}
	at, _ := time.Parse(time.RFC3339Nano, f["at"])
	kc, _ := strconv.ParseBool(f["key_changed"])
	return Event{
		ID: m.ID, Type: f["type"], AccountID: f["account_id"], SystemURL: f["system_url"], Status: f["status"],
		At: at, KeyChanged: kc, PreviousSystemURL: f["previous_system_url"], Fields: f,
	}
}
