package app_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/app"
	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/redact/redacttest"
	"github.com/modulehub/simpleconnect/verify"
)

// domainList serves the CRM's domain list format. It holds its first
// answer until release is closed, and reports each later request on
// refetched, holding it until the client gives up: a second fetch can only
// start once the first refresh has returned, so it tells the test that the
// list is in use, without sleeping.
type domainList struct {
	*httptest.Server
	release   chan struct{}
	refetched chan struct{}
}

func newDomainList(t *testing.T, body string) *domainList {
	t.Helper()
	d := &domainList{release: make(chan struct{}), refetched: make(chan struct{}, 1)}
	first := make(chan struct{}, 1)
	first <- struct{}{}
	d.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-first:
			select {
			case <-d.release:
			case <-r.Context().Done():
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, err := w.Write([]byte(body))
			assert.NoError(t, err)
		default:
			select {
			case d.refetched <- struct{}{}:
			default:
			}
			<-r.Context().Done() // the service stops, and its refresh with it
		}
	}))
	t.Cleanup(d.Close)
	return d
}

func TestARegisterFromAHostOnlyTheCRMDomainListAllowsSucceedsOnceTheListIsIn(t *testing.T) {
	fake := crmtest.New(t)
	_, port, err := net.SplitHostPort(fake.URL[len("http://"):])
	require.NoError(t, err)
	// Both names resolve to the fake CRM; only the first is on the list,
	// and neither is under CRM_ALLOWED_HOSTS.
	listed, unlisted := "http://acme.whitelabel-crm.test:"+port, "http://acme.other-crm.test:"+port
	lists := newDomainList(t, `{"createDate":"2026-11-01 00:00:00","domains":[{"domain":"whitelabel-crm.test"}]}`)

	cfg := config.Config{
		ListenAddr: "127.0.0.1:0", PublicURL: "http://module.test", ModuleCode: "demo",
		ModuleSecrets: []redact.Secret{"dev"}, ModuleScopes: []string{"integration_read", "integration_write"},
		RedisKeyPrefix: "simpleconnect", CRMAllowedHosts: []string{"retailcrm.ru"}, CRMAllowInsecure: true,
		CRMTimeout: 5 * time.Second, SessionTTL: time.Hour, ShutdownTimeout: 5 * time.Second, LogFormat: "text",
		CRMDomainsURLs: []string{lists.URL}, CRMDomainsRefresh: time.Hour,
	}.WithDefaults()
	require.NoError(t, cfg.Validate())
	// Below what Validate allows, set after it: the list is fetched again at
	// once, and that second fetch is the test's signal.
	cfg.CRMDomainsRefresh = time.Millisecond

	var logs redacttest.Log
	a, err := app.New(t.Context(), cfg, slog.New(slog.NewTextHandler(&logs, nil)), app.Options{Resolver: crmtest.LoopbackResolver("test")})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, a.Close()) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-served)
	})
	base := "http://" + ln.Addr().String()

	r := register(t, base, "key-before", listed)
	assert.False(t, r.Success, "the list is not in yet: only CRM_ALLOWED_HOSTS applies")
	assert.Contains(t, r.ErrorMsg, "can only be connected from")

	close(lists.release)
	select {
	case <-lists.refetched:
	case <-time.After(10 * time.Second):
		t.Fatal("the domain list was not fetched a second time within 10s")
	}

	r = register(t, base, "key-listed", listed)
	assert.True(t, r.Success, "a host the list names connects: %s", r.ErrorMsg)
	assert.Len(t, fake.Edits(), 1, "and only that register reached the CRM")
	r = register(t, base, "key-unlisted", unlisted)
	assert.False(t, r.Success, "a host the list does not name is still refused")
	assert.Contains(t, r.ErrorMsg, "can only be connected from")
	redacttest.AssertAbsent(t, logs.String(), "key-before", "key-listed", "key-unlisted")
}

type webhookReply struct {
	Success  bool   `json:"success"`
	ErrorMsg string `json:"errorMsg"`
}

// register sends a register signed as the CRM signs it.
func register(t *testing.T, base, apiKey, systemURL string) webhookReply {
	t.Helper()
	body, err := json.Marshal(map[string]string{"apiKey": apiKey, "systemUrl": systemURL, "token": verify.Sign("dev", redact.Secret(apiKey))})
	require.NoError(t, err)
	resp, err := http.PostForm(base+"/register", url.Values{"register": {string(body)}})
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var r webhookReply
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	return r
}
