package domains

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// document is the CRM's list format:
// {"createDate":"…","domains":[{"domain":"retailcrm.ru"},…]}.
type document struct {
	Domains []struct {
		Domain string `json:"domain"`
	} `json:"domains"`
}

var hostRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$`)

// maxBody caps a list: the real ones are a few kilobytes.
const maxBody = 1 << 20

// List is the union of the last good version of every configured list.
type List struct {
	urls   []string
	client *http.Client
	log    *slog.Logger
	// OnRefresh, when set, is told the outcome of every fetch ("ok" or
	// "failed"), for metrics.
	OnRefresh func(outcome string)

	mu     sync.Mutex          // serialises refreshes
	byURL  map[string][]string // last good list per URL
	merged atomic.Pointer[[]string]
}

// New returns a List of the given URLs; each fetch gives up after timeout.
func New(urls []string, timeout time.Duration, log *slog.Logger) *List {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &List{
		urls: urls, log: log, byURL: map[string][]string{},
		client: &http.Client{Timeout: timeout},
	}
}

// Hosts returns the current host suffixes; nil before the first good
// fetch. It never blocks.
func (l *List) Hosts() []string {
	if p := l.merged.Load(); p != nil {
		return *p
	}
	return nil
}

// Refresh fetches every list once. A list that fails keeps its last good
// version; the error reports the failures.
func (l *List) Refresh(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var (
		errs     []error
		outcomes []string
	)
	for _, u := range l.urls {
		hosts, err := l.fetch(ctx, u)
		outcome := "ok"
		if err != nil {
			outcome = "failed"
			errs = append(errs, fmt.Errorf("domain list %s: %w", u, err))
		} else {
			l.byURL[u] = hosts
		}
		outcomes = append(outcomes, outcome)
	}
	var merged []string
	seen := map[string]bool{}
	for _, u := range l.urls {
		for _, h := range l.byURL[u] {
			if !seen[h] {
				seen[h] = true
				merged = append(merged, h)
			}
		}
	}
	if len(merged) > 0 {
		l.merged.Store(&merged)
	}
	// Told once the new list is in use, so whoever hears "ok" can rely on it.
	if l.OnRefresh != nil {
		for _, o := range outcomes {
			l.OnRefresh(o)
		}
	}
	return errors.Join(errs...)
}

func (l *List) fetch(ctx context.Context, u string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	var doc document
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("not a domain list: %w", err)
	}
	var hosts []string
	for _, d := range doc.Domains {
		h := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d.Domain)), ".")
		if hostRe.MatchString(h) {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return nil, errors.New("the list has no usable domain") // a glitch must not wipe the allow-list
	}
	return hosts, nil
}

// Run refreshes now and then every interval until ctx ends. Failures are
// logged; the last good list stays in use.
func (l *List) Run(ctx context.Context, every time.Duration) {
	for {
		if err := l.Refresh(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("refreshing the CRM domain lists failed; keeping the last good ones", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}
