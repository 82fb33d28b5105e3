package ratelimit

import "time"

// SetClock replaces the clock Failures uses to expire what it remembers.
func (f *Failures) SetClock(now func() time.Time) { f.now = now }
