package store

import "time"

// EmbeddedClock makes Open's embedded store take the time from tick,
// starting at start, instead of from a one-second ticker: a test moves the
// clock and knows when the move took effect.
func EmbeddedClock(o Options, start time.Time, tick <-chan time.Time) Options {
	o.clockStart, o.clockTick = start, tick
	return o
}
