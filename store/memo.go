package store

import (
	"strings"
	"sync"
)

// shopCache maps shop addresses to account ids, bounded: when full it
// starts over (every entry is only a hint the scripts check).
type shopCache struct {
	mu  sync.Mutex
	max int
	m   map[string]string
}

func newShopCache(max int) *shopCache { return &shopCache{max: max, m: map[string]string{}} }

func (c *shopCache) get(url string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[url]
}

func (c *shopCache) put(url, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[url] = id
}

func (c *shopCache) drop(url string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, url)
}

// idSet is a bounded set of ids (each unreadable account is logged once
// per process, however often it is read; past the bound, again).
type idSet struct {
	mu  sync.Mutex
	max int
	m   map[string]struct{}
}

func newIDSet(max int) *idSet { return &idSet{max: max, m: map[string]struct{}{}} }

// add reports whether id is new.
func (s *idSet) add(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[id]; ok {
		return false
	}
	if len(s.m) >= s.max {
		clear(s.m)
	}
	s.m[id] = struct{}{}
	return true
}

func (s *idSet) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// noteUnreadable logs an unreadable account once, with its id and the
// fields that failed (never a value).
func (s *Redis) noteUnreadable(id string, fields []string) {
	if s.unreadable.add(id) {
		s.log.Error("account cannot be read: skipped; a register from the shop repairs it, or restore the encryption key that sealed it",
			"account_id", id, "fields", strings.Join(fields, ","))
	}
}

func (s *Redis) forgetUnreadable(id string) { s.unreadable.remove(id) }
