// Package redacttest helps tests prove that no credential reaches a log:
// a log sink safe for concurrent handlers, and a check that none of a list
// of secrets appears in it.
package redacttest

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

// Log collects log output from concurrent writers.
type Log struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// AssertAbsent reports every non-empty secret found in text.
func AssertAbsent(t testing.TB, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("a credential reached the output: %q…", s[:min(4, len(s))])
		}
	}
}
