package connect

import (
	"context"
	"sync"
)

// keyedLocks are mutexes by name (a shop's address) that exist only while
// someone holds or waits for them, so the map never outgrows the requests
// in flight. Waiting respects the caller's context.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	ch   chan struct{}
	refs int
}

func newKeyedLocks() *keyedLocks { return &keyedLocks{m: map[string]*keyedLock{}} }

// lock waits for the named lock and returns its unlock.
func (k *keyedLocks) lock(ctx context.Context, name string) (func(), error) {
	k.mu.Lock()
	l := k.m[name]
	if l == nil {
		l = &keyedLock{ch: make(chan struct{}, 1)}
		k.m[name] = l
	}
	l.refs++
	k.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; k.done(name, l) }, nil
	case <-ctx.Done():
		k.done(name, l)
		return nil, ctx.Err()
	}
}

func (k *keyedLocks) done(name string, l *keyedLock) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l.refs--; l.refs == 0 {
		delete(k.m, name)
	}
}

// size is how many names have a lock (tests: it must fall back to zero).
func (k *keyedLocks) size() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.m)
}
