package domains_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/domains"
	"github.com/modulehub/simpleconnect/verify"
)

// listServer serves whatever body/status the test sets, and can hang.
type listServer struct {
	*httptest.Server
	body    atomic.Value // string
	status  atomic.Int32
	hang    chan struct{}
	hanging atomic.Bool
	// arrived tells of each request that hangs, once it is held.
	arrived chan struct{}
}

func newListServer(t *testing.T, body string) *listServer {
	s := &listServer{hang: make(chan struct{}), arrived: make(chan struct{}, 16)}
	s.body.Store(body)
	s.status.Store(http.StatusOK)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.hanging.Load() {
			select {
			case s.arrived <- struct{}{}:
			default: // nobody is counting
			}
			select {
			case <-s.hang:
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(s.status.Load()))
		_, _ = w.Write([]byte(s.body.Load().(string)))
	}))
	t.Cleanup(func() { close(s.hang); s.Close() })
	return s
}

const crmDomains = `{"createDate":"2026-11-01 00:00:00","domains":[{"domain":"retailcrm.ru"},{"domain":"whitelabel-crm.example"},{"domain":"Bad Domain"},{"domain":"Shop.Example.ORG."}]}`

func TestRefreshLoadsTheList(t *testing.T) {
	srv := newListServer(t, crmDomains)
	l := domains.New([]string{srv.URL}, time.Second, nil)
	assert.Nil(t, l.Hosts(), "nothing before the first fetch")
	require.NoError(t, l.Refresh(t.Context()))
	assert.Equal(t, []string{"retailcrm.ru", "whitelabel-crm.example", "shop.example.org"}, l.Hosts(), "invalid entries dropped, names normalised")

	// The address policy picks it up without a restart.
	p := verify.AddressPolicy{AllowedHosts: []string{"simla.com"}, ExtraHosts: l.Hosts}
	got, err := p.Canonical("https://acme.whitelabel-crm.example")
	require.NoError(t, err)
	assert.Equal(t, "https://acme.whitelabel-crm.example", got)
	_, err = p.Canonical("https://acme.whitelabel-crm.example.evil.com")
	assert.ErrorIs(t, err, verify.ErrAddressNotAllowed)
}

func TestFailedRefreshKeepsTheLastGoodList(t *testing.T) {
	srv := newListServer(t, crmDomains)
	var outcomes []string
	l := domains.New([]string{srv.URL}, time.Second, nil)
	l.OnRefresh = func(o string) { outcomes = append(outcomes, o) }
	require.NoError(t, l.Refresh(t.Context()))
	good := l.Hosts()

	for name, mutate := range map[string]func(){
		"server error": func() { srv.status.Store(http.StatusInternalServerError) },
		"not json":     func() { srv.status.Store(http.StatusOK); srv.body.Store("<html>") },
		"empty list":   func() { srv.body.Store(`{"domains":[]}`) },
		"only garbage": func() { srv.body.Store(`{"domains":[{"domain":"-"},{"domain":""}]}`) },
	} {
		t.Run(name, func(t *testing.T) {
			mutate()
			assert.Error(t, l.Refresh(t.Context()))
			assert.Equal(t, good, l.Hosts())
		})
	}
	assert.Equal(t, []string{"ok", "failed", "failed", "failed", "failed"}, outcomes)
}

// within returns what ch delivers, or fails the test if nothing comes in
// a time far beyond what the step needs: a bound, not a pace.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s after 10s", what)
		panic("unreachable")
	}
}

func TestReadersGetTheLastGoodListWhileARefreshIsStuck(t *testing.T) {
	srv := newListServer(t, crmDomains)
	l := domains.New([]string{srv.URL}, time.Hour, nil) // the fetch stays stuck until the test ends it
	require.NoError(t, l.Refresh(t.Context()))
	good := l.Hosts()

	srv.hanging.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	refreshed := make(chan error, 1)
	go func() { refreshed <- l.Refresh(ctx) }()
	within(t, srv.arrived, "request from the refresh") // it is now waiting on the list server

	read := make(chan []string, 1)
	go func() { read <- l.Hosts() }()
	assert.Equal(t, good, within(t, read, "answer from Hosts() while a refresh is stuck"), "the last good list")
	select {
	case err := <-refreshed:
		t.Fatalf("the refresh ended before the read was checked (%v): the read proved nothing", err)
	default: // still stuck: the read above did not wait for it
	}

	cancel()
	assert.ErrorIs(t, within(t, refreshed, "end of the cancelled refresh"), context.Canceled)
	assert.Equal(t, good, l.Hosts())
}

func TestARefreshThatTimesOutKeepsTheLastGoodList(t *testing.T) {
	srv := newListServer(t, crmDomains)
	l := domains.New([]string{srv.URL}, 200*time.Millisecond, nil) // the list server never answers: nothing to race
	require.NoError(t, l.Refresh(t.Context()))
	good := l.Hosts()

	srv.hanging.Store(true)
	err := l.Refresh(context.Background())
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout(), "the fetch gave up after its timeout: %v", err)
	assert.Equal(t, good, l.Hosts())
}

func TestSeveralListsAreMergedAndEachKeepsItsLastGoodVersion(t *testing.T) {
	saas := newListServer(t, `{"domains":[{"domain":"retailcrm.ru"}]}`)
	box := newListServer(t, `{"domains":[{"domain":"crm.bigshop.example"}]}`)
	l := domains.New([]string{saas.URL, box.URL}, time.Second, nil)
	require.NoError(t, l.Refresh(t.Context()))
	assert.Equal(t, []string{"retailcrm.ru", "crm.bigshop.example"}, l.Hosts())

	box.status.Store(http.StatusBadGateway)
	saas.body.Store(`{"domains":[{"domain":"retailcrm.ru"},{"domain":"simla.io"}]}`)
	assert.Error(t, l.Refresh(t.Context()))
	assert.Equal(t, []string{"retailcrm.ru", "simla.io", "crm.bigshop.example"}, l.Hosts())
}

func TestRunRefreshesAtOnceAndStopsWithItsContext(t *testing.T) {
	srv := newListServer(t, crmDomains)
	l := domains.New([]string{srv.URL}, time.Second, nil)
	refreshed := make(chan struct{}, 1)
	l.OnRefresh = func(string) {
		select {
		case refreshed <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { l.Run(ctx, time.Hour); close(stopped) }()
	<-refreshed
	assert.NotEmpty(t, l.Hosts())
	cancel()
	<-stopped
}
