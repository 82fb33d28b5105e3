package crm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"code.dny.dev/ssrf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/redact"
)

// recordedKey is the API key every fixture in testdata/crm was recorded with.
const recordedKey = redact.Secret("recorded-api-key")

// recordedModule is the module every edit fixture was recorded with.
func recordedModule() crm.Module {
	return crm.Module{
		Code:            "demo",
		IntegrationCode: "demo",
		Active:          true,
		Name:            "Demo module",
		Logo:            "https://module.example.com/static/logo.svg",
		ClientID:        redact.Secret("UoR0zODI4olWV6Fzze5KU4X-IKGPbJ562dXqJtK13bc"),
		BaseURL:         "https://module.example.com",
		AccountURL:      "https://module.example.com/account",
		Actions:         map[string]string{"activity": "/activity"},
	}
}

// sentinels maps the names used in fixtures' "expect" to the errors.
var sentinels = map[string]error{
	"ErrValidation":      crm.ErrValidation,
	"ErrUnauthorized":    crm.ErrUnauthorized,
	"ErrPaymentRequired": crm.ErrPaymentRequired,
	"ErrForbidden":       crm.ErrForbidden,
	"ErrMethodNotFound":  crm.ErrMethodNotFound,
	"ErrRateLimited":     crm.ErrRateLimited,
	"ErrUnavailable":     crm.ErrUnavailable,
	"ErrNoAccount":       crm.ErrNoAccount,
	"ErrBlocked":         crm.ErrBlocked,
	"ErrUnexpected":      crm.ErrUnexpected,
}

const defaultRetries = 3 // crm.Options.Retries when left zero

// testOptions is a client for loopback fakes with fast backoff.
func testOptions() crm.Options {
	return crm.Options{
		AllowInsecure: true,
		RetryWait:     time.Millisecond,
		RetryMaxWait:  5 * time.Millisecond,
		Timeout:       2 * time.Second,
	}
}

// attempts collects what OnAttempt reports.
type attempts struct {
	mu   sync.Mutex
	list []crm.Attempt
}

func (a *attempts) record(at crm.Attempt) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.list = append(a.list, at)
}

func (a *attempts) all() []crm.Attempt {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]crm.Attempt(nil), a.list...)
}

// received is one request a replay server got.
type received struct {
	method string
	path   string
	query  string
	header http.Header
	form   url.Values
}

// replayServer answers every request with the fixture's recorded response
// and keeps what it was sent.
type replayServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []received
}

func newReplayServer(t *testing.T, p crmtest.Pair) *replayServer {
	t.Helper()
	rs := &replayServer{}
	rs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.NoError(t, r.ParseForm(), "the request's form reads")
		rs.mu.Lock()
		rs.reqs = append(rs.reqs, received{
			method: r.Method, path: r.URL.Path, query: r.URL.RawQuery,
			header: r.Header.Clone(), form: r.PostForm,
		})
		rs.mu.Unlock()
		for k, v := range p.Response.Headers {
			w.Header().Set(k, v)
		}
		w.WriteHeader(p.Response.Status)
		_, _ = w.Write([]byte(p.Response.Body))
	}))
	t.Cleanup(rs.Close)
	return rs
}

func (rs *replayServer) received() []received {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]received(nil), rs.reqs...)
}

// retryable is the recorded statuses the client must try 1+Retries times.
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// assertSentAsRecorded checks one request we sent against the recording.
func assertSentAsRecorded(t *testing.T, p crmtest.Pair, got received) {
	t.Helper()
	assert.Equal(t, p.Request.Method, got.method, "method")
	assert.Equal(t, p.Request.Path, got.path, "path")
	assert.Empty(t, got.query, "nothing travels in the query string, the key least of all")
	for name, want := range p.Request.Headers {
		assert.Equal(t, want, got.header.Get(name), "header %s", name)
	}
	wantFields := make([]string, 0, len(p.Request.Form))
	for k := range p.Request.Form {
		wantFields = append(wantFields, k)
	}
	gotFields := make([]string, 0, len(got.form))
	for k := range got.form {
		gotFields = append(gotFields, k)
	}
	sort.Strings(wantFields)
	sort.Strings(gotFields)
	assert.Equal(t, wantFields, gotFields, "form fields")
	for k, want := range p.Request.Form {
		if k == "integrationModule" {
			assert.JSONEq(t, want, got.form.Get(k), "form field %s", k)
			continue
		}
		assert.Equal(t, want, got.form.Get(k), "form field %s", k)
	}
}

// assertOutcome checks err against the fixture's expect and reason.
func assertOutcome(t *testing.T, p crmtest.Pair, err error) {
	t.Helper()
	if p.Expect == "success" {
		require.NoError(t, err)
		return
	}
	want, ok := sentinels[p.Expect]
	require.True(t, ok, "fixture %s expects unknown outcome %q", p.Name, p.Expect)
	require.ErrorIs(t, err, want)
	for name, other := range sentinels {
		if other != want {
			assert.NotErrorIs(t, err, other, "also matches %s", name)
		}
	}
	var ce *crm.Error
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, p.Response.Status, ce.Status, "status kept in the error")
	assert.Equal(t, p.Reason, ce.Reason(), "reason")
	assert.NotContains(t, err.Error(), recordedKey.Reveal())
}

// assertRawJSON checks a decoded json.RawMessage against the recorded value.
func assertRawJSON(t *testing.T, want, got json.RawMessage, field string) {
	t.Helper()
	if len(want) == 0 {
		assert.Empty(t, got, field)
		return
	}
	assert.JSONEq(t, string(want), string(got), field)
}

func TestEditModuleReplaysRecordedPairs(t *testing.T) {
	for _, p := range crmtest.Fixtures(t, "edit-") {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			srv := newReplayServer(t, p)
			var seen attempts
			opts := testOptions()
			opts.OnAttempt = seen.record
			c := crm.New(opts)

			info, err := c.EditModule(context.Background(), srv.URL, recordedKey, recordedModule())
			assertOutcome(t, p, err)

			wantCalls := 1
			if retryable(p.Response.Status) {
				wantCalls = 1 + defaultRetries
			}
			got := srv.received()
			require.Len(t, got, wantCalls, "requests the CRM received")
			for _, r := range got {
				assertSentAsRecorded(t, p, r)
			}
			assert.Len(t, seen.all(), wantCalls, "OnAttempt calls")

			if p.Expect == "success" {
				var body struct {
					Info json.RawMessage `json:"info"`
				}
				require.NoError(t, json.Unmarshal([]byte(p.Response.Body), &body))
				var obj map[string]json.RawMessage
				if strings.HasPrefix(string(body.Info), "{") {
					require.NoError(t, json.Unmarshal(body.Info, &obj))
				}
				assertRawJSON(t, obj["billingInfo"], info.BillingInfo, "info.billingInfo")
				assertRawJSON(t, obj["deliveryType"], info.DeliveryType, "info.deliveryType")
			}
		})
	}
}

func TestFetchCredentialsReplaysRecordedPairs(t *testing.T) {
	for _, p := range crmtest.Fixtures(t, "credentials-") {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			srv := newReplayServer(t, p)
			c := crm.New(testOptions())

			creds, err := c.FetchCredentials(context.Background(), srv.URL, recordedKey)
			assertOutcome(t, p, err)

			wantCalls := 1
			if retryable(p.Response.Status) {
				wantCalls = 1 + defaultRetries
			}
			got := srv.received()
			require.Len(t, got, wantCalls)
			for _, r := range got {
				assertSentAsRecorded(t, p, r)
			}

			if p.Expect == "success" {
				var want struct {
					Scopes         []string `json:"scopes"`
					Credentials    []string `json:"credentials"`
					SiteAccess     string   `json:"siteAccess"`
					SitesAvailable []string `json:"sitesAvailable"`
				}
				require.NoError(t, json.Unmarshal([]byte(p.Response.Body), &want))
				require.NotEmpty(t, want.Credentials, "fixture lists credentials")
				assert.Equal(t, want.Scopes, creds.Scopes, "nil when the CRM sends none: callers tell 'no scopes' from 'unknown'")
				assert.Equal(t, want.Credentials, creds.Credentials)
				assert.Equal(t, want.SiteAccess, creds.SiteAccess)
				assert.Equal(t, want.SitesAvailable, creds.SitesAvailable)
			}
		})
	}
}

func TestEditModuleRetriesUnavailableThenSucceeds(t *testing.T) {
	const key = "key-retry"
	fake := crmtest.New(t, crmtest.Edit(key, crmtest.Status(http.StatusServiceUnavailable), crmtest.OK()))
	c := crm.New(testOptions())

	_, err := c.EditModule(context.Background(), fake.URL, key, recordedModule())
	require.NoError(t, err)
	edits := fake.Edits()
	require.Len(t, edits, 2, "retried once, then succeeded")
	for _, e := range edits {
		assert.Equal(t, key, e.APIKey())
		assert.Equal(t, "demo", e.Module["code"])
	}
	assert.NotNil(t, fake.Module(key), "the fake accepted the module")
}

func TestEditModuleDoesNotRetryClientErrors(t *testing.T) {
	tests := []struct {
		status int
		want   error
	}{
		{http.StatusBadRequest, crm.ErrValidation},
		{http.StatusUnauthorized, crm.ErrUnauthorized},
		{http.StatusPaymentRequired, crm.ErrPaymentRequired},
		{http.StatusForbidden, crm.ErrForbidden},
		{http.StatusNotFound, crm.ErrMethodNotFound},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d is answered after one call", tt.status), func(t *testing.T) {
			t.Parallel()
			const key = "key-4xx"
			fake := crmtest.New(t, crmtest.Edit(key, crmtest.Status(tt.status), crmtest.OK()))
			c := crm.New(testOptions())

			_, err := c.EditModule(context.Background(), fake.URL, key, recordedModule())
			require.ErrorIs(t, err, tt.want)
			assert.Len(t, fake.Edits(), 1)
		})
	}
}

func TestEditModuleTimeoutIsUnavailable(t *testing.T) {
	const key = "key-hang"
	fake := crmtest.New(t, crmtest.Edit(key, crmtest.Hang()))
	var seen attempts
	opts := testOptions() // a 2 s budget, 1 s per attempt: time enough to reach the CRM on a loaded machine
	opts.Retries = 10
	opts.OnAttempt = seen.record
	c := crm.New(opts)

	start := time.Now()
	_, err := c.EditModule(context.Background(), fake.URL, key, recordedModule())
	elapsed := time.Since(start)

	require.ErrorIs(t, err, crm.ErrUnavailable)
	// Without the overall deadline, 11 hung attempts of 1 s would take 11 s.
	assert.Less(t, elapsed, 8*time.Second, "the overall deadline bounds the call")
	assert.NotEmpty(t, fake.Edits(), "the CRM was reached before it hung")
	// Every attempt hangs until a timeout ends it, so a machine of any speed
	// gets through fewer than 1+Retries of them before the overall deadline;
	// without that deadline all 11 would run.
	got := seen.all()
	assert.NotEmpty(t, got)
	assert.Less(t, len(got), 1+opts.Retries, "the deadline cut the retries short")
	for _, a := range got {
		assert.Error(t, a.Err, "a hung attempt ends in an error")
	}
}

func TestEditModuleHungAttemptLeavesRoomForARetry(t *testing.T) {
	const key = "key-hang-once"
	fake := crmtest.New(t, crmtest.Edit(key, crmtest.Hang(), crmtest.OK()))
	c := crm.New(testOptions()) // each attempt gets half of the 2s budget

	_, err := c.EditModule(context.Background(), fake.URL, key, recordedModule())
	require.NoError(t, err, "the first attempt timed out in time for a second one")
	assert.Len(t, fake.Edits(), 2)
}

func TestEditModuleStopsWhenCallerCancels(t *testing.T) {
	const key = "key-cancel"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fake := crmtest.New(t,
		crmtest.Edit(key, crmtest.Hang()),
		crmtest.OnCall(func(crmtest.Call) { cancel() }), // the caller gives up once the CRM has the request
	)
	var seen attempts
	opts := testOptions()
	opts.OnAttempt = seen.record
	c := crm.New(opts)

	_, err := c.EditModule(ctx, fake.URL, key, recordedModule())
	require.ErrorIs(t, err, crm.ErrUnavailable)
	assert.Len(t, seen.all(), 1, "a cancelled call is not retried")
}

func TestEditModuleConnectionRefusedIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there any more

	var seen attempts
	opts := testOptions()
	opts.OnAttempt = seen.record
	c := crm.New(opts)

	_, err = c.EditModule(context.Background(), "http://"+addr, recordedKey, recordedModule())
	require.ErrorIs(t, err, crm.ErrUnavailable)
	got := seen.all()
	require.NotEmpty(t, got)
	for _, a := range got {
		assert.Equal(t, "edit", a.Op)
		assert.Zero(t, a.Status, "no reply came")
		assert.Error(t, a.Err)
	}
}

// countingServer is an httptest server that counts the connections it
// accepts, so a test can tell "refused before connecting" from "connected".
type countingServer struct {
	*httptest.Server
	conns    atomic.Int64
	requests atomic.Int64
}

func startCountingServer(t *testing.T, addr string, h http.Handler) *countingServer {
	t.Helper()
	cs := &countingServer{}
	cs.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.requests.Add(1)
		h.ServeHTTP(w, r)
	}))
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("cannot listen on %s here: %v", addr, err)
		}
		_ = cs.Listener.Close()
		cs.Listener = ln
	}
	cs.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			cs.conns.Add(1)
		}
	}
	cs.Start()
	t.Cleanup(cs.Close)
	return cs
}

func (cs *countingServer) port(t *testing.T) uint16 {
	t.Helper()
	ap, err := netip.ParseAddrPort(cs.Listener.Addr().String())
	require.NoError(t, err)
	return ap.Port()
}

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"success":true,"info":[]}`))
	})
}

func TestEditModuleFollowsNoRedirect(t *testing.T) {
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(fmt.Sprintf("%d is not followed and means no account", status), func(t *testing.T) {
			t.Parallel()
			const key = "key-redirect"
			other := startCountingServer(t, "", okHandler())
			fake := crmtest.New(t, crmtest.Edit(key, crmtest.Reply{
				Status: status,
				Header: map[string]string{"Location": other.URL + "/api/v5/integration-modules/demo/edit"},
			}))
			c := crm.New(testOptions())

			_, err := c.EditModule(context.Background(), fake.URL, key, recordedModule())
			require.ErrorIs(t, err, crm.ErrNoAccount)
			assert.Len(t, fake.Edits(), 1, "not retried")
			assert.Zero(t, other.conns.Load(), "connections to the redirect target")
			assert.Zero(t, other.requests.Load(), "requests to the redirect target")
		})
	}
}

func TestGuardRefusesLoopbackBeforeConnecting(t *testing.T) {
	srv := startCountingServer(t, "", okHandler())
	port := strconv.Itoa(int(srv.port(t)))

	tests := []struct {
		name      string
		systemURL string
	}{
		{"loopback IPv4", "http://127.0.0.1:" + port},
		{"IPv4-mapped IPv6 loopback", "http://[::ffff:127.0.0.1]:" + port},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen attempts
			opts := testOptions()
			opts.AllowInsecure = false
			opts.AllowedPorts = []uint16{srv.port(t)} // the port passes: only the address is refused
			opts.OnAttempt = seen.record
			c := crm.New(opts)

			before := srv.conns.Load()
			_, err := c.EditModule(context.Background(), tt.systemURL, recordedKey, recordedModule())
			require.ErrorIs(t, err, crm.ErrBlocked)
			assert.Equal(t, before, srv.conns.Load(), "connections the server saw")
			assert.Len(t, seen.all(), 1, "a refused dial is not retried")
		})
	}

	// Control: the same addresses do reach the server without the guard, so
	// the zero counts above are the guard's doing.
	t.Run("control without the guard", func(t *testing.T) {
		c := crm.New(testOptions())
		for _, tt := range tests {
			before := srv.conns.Load()
			_, err := c.EditModule(context.Background(), tt.systemURL, recordedKey, recordedModule())
			require.NoError(t, err, tt.name)
			assert.Greater(t, srv.conns.Load(), before, tt.name)
		}
	})
}

func TestGuardAllowsConfiguredPrefixButNoRedirectOut(t *testing.T) {
	const key = "key-guard"
	target := startCountingServer(t, "127.0.0.1:0", okHandler())
	redirect := crmtest.Reply{
		Status: http.StatusFound,
		Header: map[string]string{"Location": target.URL + "/api/v5/integration-modules/demo/edit"},
	}
	fake, err := crmtest.Start("127.0.0.2:0", crmtest.Edit(key, crmtest.OK(), redirect))
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2 here: %v", err)
	}
	t.Cleanup(fake.Close)
	fakeAddr, err := netip.ParseAddrPort(strings.TrimPrefix(fake.URL, "http://"))
	require.NoError(t, err)

	opts := testOptions()
	opts.AllowInsecure = false
	opts.AllowedPorts = []uint16{fakeAddr.Port(), target.port(t)}
	opts.GuardOptions = []ssrf.Option{ssrf.WithAllowedV4Prefixes(netip.MustParsePrefix("127.0.0.2/32"))}
	c := crm.New(opts)

	_, err = c.EditModule(context.Background(), fake.URL, key, recordedModule())
	require.NoError(t, err, "127.0.0.2 is allowed")
	require.Len(t, fake.Edits(), 1)

	_, err = c.EditModule(context.Background(), fake.URL, key, recordedModule())
	require.ErrorIs(t, err, crm.ErrNoAccount, "the redirect is not followed")
	assert.Len(t, fake.Edits(), 2)
	assert.Zero(t, target.conns.Load(), "connections to 127.0.0.1")

	_, err = c.EditModule(context.Background(), target.URL, key, recordedModule())
	require.ErrorIs(t, err, crm.ErrBlocked, "the allowance is 127.0.0.2 only")
	assert.Zero(t, target.conns.Load(), "connections to 127.0.0.1")
}

func TestAPIKeyNeverInErrors(t *testing.T) {
	const key = "sk-live-7f3a9c2e51d04b8a"
	jsonHeader := map[string]string{"Content-Type": "application/json; charset=UTF-8"}
	tests := []struct {
		name   string
		reply  crmtest.Reply
		want   error
		echoed bool // the CRM's text contained the key: the scrubbed text is kept
	}{
		{"key echoed in errorMsg", crmtest.Reply{Status: 403, Header: jsonHeader,
			Body: `{"success":false,"errorMsg":"Wrong \"apiKey\" value: ` + key + `"}`}, crm.ErrForbidden, true},
		{"key echoed in errors array", crmtest.Reply{Status: 400, Header: jsonHeader,
			Body: `{"success":false,"errorMsg":"Validation error","errors":["apiKey ` + key + ` is not active"]}`}, crm.ErrValidation, true},
		{"key echoed in errors map key and value", crmtest.Reply{Status: 400, Header: jsonHeader,
			Body: `{"success":false,"errorMsg":"Validation error","errors":{"` + key + `":"key ` + key + ` is blocked"}}`}, crm.ErrValidation, true},
		{"key echoed by a retried 503", crmtest.Reply{Status: 503, Header: jsonHeader,
			Body: `{"success":false,"errorMsg":"Service unavailable for ` + key + `"}`}, crm.ErrUnavailable, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := crmtest.New(t, crmtest.Edit(key, tt.reply))
			c := crm.New(testOptions())

			_, err := c.EditModule(context.Background(), fake.URL, key, recordedModule())
			require.ErrorIs(t, err, tt.want)
			require.Equal(t, key, fake.Edits()[0].APIKey(), "the key did reach the CRM")
			assertNoKey(t, err, key)
			var ce *crm.Error
			require.ErrorAs(t, err, &ce)
			assert.Contains(t, ce.Reason(), redact.Placeholder, "the CRM's text is kept, scrubbed")
		})
	}

	t.Run("transport error quoting a URL with the key", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		c := crm.New(testOptions())

		// A caller that wrongly put the key into the address: url.Error
		// quotes the URL (minus any password, but not the user name).
		_, err = c.EditModule(context.Background(), "http://"+key+"@"+addr, key, recordedModule())
		require.ErrorIs(t, err, crm.ErrUnavailable)
		assertNoKey(t, err, key)
		assert.Contains(t, err.Error(), redact.Placeholder, "the quoted URL was scrubbed, not dropped")
	})

	t.Run("credentials", func(t *testing.T) {
		fake := crmtest.New(t, crmtest.Scopes(key)) // a nil scope list: the fake answers 403
		c := crm.New(testOptions())
		_, err := c.FetchCredentials(context.Background(), fake.URL, key)
		require.ErrorIs(t, err, crm.ErrForbidden)
		assertNoKey(t, err, key)
	})
}

func assertNoKey(t *testing.T, err error, key string) {
	t.Helper()
	for _, s := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		assert.NotContains(t, s, key)
	}
	var ce *crm.Error
	if errors.As(err, &ce) {
		assert.NotContains(t, ce.Reason(), key)
		assert.NotContains(t, ce.Message, key)
		for _, d := range ce.Details {
			assert.NotContains(t, d, key)
		}
	}
}

func TestEncodeModule(t *testing.T) {
	t.Run("matches the recorded request", func(t *testing.T) {
		p := crmtest.Fixture(t, "edit-ok-info-object")
		got, err := crm.EncodeModule(recordedModule())
		require.NoError(t, err)
		assert.JSONEq(t, p.Request.Form["integrationModule"], got)
	})

	t.Run("clientId in clear, freeze omitted when false, activity action", func(t *testing.T) {
		m := recordedModule()
		m.ClientID = "client-id-in-clear"
		got, err := crm.EncodeModule(m)
		require.NoError(t, err)
		var payload map[string]any
		require.NoError(t, json.Unmarshal([]byte(got), &payload))
		assert.Equal(t, "client-id-in-clear", payload["clientId"])
		assert.NotContains(t, got, redact.Placeholder)
		assert.NotContains(t, payload, "freeze")
		assert.Equal(t, true, payload["active"])
		assert.Equal(t, "demo", payload["code"])
		assert.Equal(t, "demo", payload["integrationCode"])
		assert.Equal(t, "https://module.example.com", payload["baseUrl"])
		assert.Equal(t, "https://module.example.com/account", payload["accountUrl"])
		actions, ok := payload["actions"].(map[string]any)
		require.True(t, ok, "actions is an object: %v", payload["actions"])
		assert.Equal(t, "/activity", actions["activity"])
	})

	t.Run("freeze sent when true", func(t *testing.T) {
		m := recordedModule()
		m.Freeze = true
		got, err := crm.EncodeModule(m)
		require.NoError(t, err)
		var payload map[string]any
		require.NoError(t, json.Unmarshal([]byte(got), &payload))
		assert.Equal(t, true, payload["freeze"])
	})

	t.Run("inactive module says active false", func(t *testing.T) {
		m := recordedModule()
		m.Active = false
		got, err := crm.EncodeModule(m)
		require.NoError(t, err)
		var payload map[string]any
		require.NoError(t, json.Unmarshal([]byte(got), &payload))
		assert.Equal(t, false, payload["active"], "active is always sent")
	})
}

func TestReplyDecoding(t *testing.T) {
	long := strings.Repeat("x", 500)
	tests := []struct {
		name       string
		status     int
		body       string
		wantErr    error
		wantReason string
		wantInfo   crm.Info
	}{
		{name: "errors as array keep their order", status: 400,
			body:    `{"success":false,"errorMsg":"Validation error","errors":["second field bad","first field bad"]}`,
			wantErr: crm.ErrValidation, wantReason: "Validation error; second field bad; first field bad"},
		{name: "errors as map are sorted field: msg", status: 400,
			body:    `{"success":false,"errorMsg":"Errors in the entity format","errors":{"name":"too long","code":"blank","baseUrl":"bad"}}`,
			wantErr: crm.ErrValidation, wantReason: "Errors in the entity format; baseUrl: bad; code: blank; name: too long"},
		{name: "map of arrays joins the messages", status: 400,
			body:    `{"success":false,"errorMsg":"Validation error","errors":{"code":["too short","invalid"]}}`,
			wantErr: crm.ErrValidation, wantReason: "Validation error; code: too short, invalid"},
		{name: "nested arrays are flattened per entry", status: 400,
			body:    `{"success":false,"errorMsg":"Validation error","errors":["a",["b","c"]]}`,
			wantErr: crm.ErrValidation, wantReason: "Validation error; a; b, c"},
		{name: "non-string values are kept verbatim", status: 400,
			body:    `{"success":false,"errorMsg":"Validation error","errors":{"count":3}}`,
			wantErr: crm.ErrValidation, wantReason: "Validation error; count: 3"},
		{name: "errors as a bare string are kept", status: 400,
			body:    `{"success":false,"errorMsg":"Validation error","errors":"code is blank"}`,
			wantErr: crm.ErrValidation, wantReason: "Validation error; code is blank"},
		{name: "errors null", status: 400,
			body:    `{"success":false,"errorMsg":"Validation error","errors":null}`,
			wantErr: crm.ErrValidation, wantReason: "Validation error"},
		{name: "errors empty object", status: 400,
			body:    `{"success":false,"errorMsg":"Validation error","errors":{}}`,
			wantErr: crm.ErrValidation, wantReason: "Validation error"},
		{name: "no explanation at all", status: 403,
			body:    `{"success":false}`,
			wantErr: crm.ErrForbidden, wantReason: ""},
		{name: "control characters become spaces", status: 400,
			body:    `{"success":false,"errorMsg":"line one\nline two\t","errors":["a\u0000b"]}`,
			wantErr: crm.ErrValidation, wantReason: "line one line two; a b"},
		{name: "a long reason is cut", status: 400,
			body:    `{"success":false,"errorMsg":"` + long + `"}`,
			wantErr: crm.ErrValidation, wantReason: strings.Repeat("x", 299) + "…"},
		{name: "a non-JSON error body still has its status kind", status: 502,
			body:    `Bad Gateway`,
			wantErr: crm.ErrUnavailable},
		{name: "an empty 200 is unexpected", status: 200,
			body:    ``,
			wantErr: crm.ErrUnexpected},
		{name: "success false on 200 is unexpected", status: 200,
			body:    `{"success":false,"errorMsg":"try later"}`,
			wantErr: crm.ErrUnexpected, wantReason: "try later"},
		{name: "info as empty array is success", status: 200, body: `{"success":true,"info":[]}`},
		{name: "info as empty object is success", status: 200, body: `{"success":true,"info":{}}`},
		{name: "info null is success", status: 200, body: `{"success":true,"info":null}`},
		{name: "info missing is success", status: 200, body: `{"success":true}`},
		{name: "info object is decoded", status: 200,
			body: `{"success":true,"info":{"deliveryType":{"code":"demo-delivery"},"billingInfo":{"price":10}}}`,
			wantInfo: crm.Info{
				DeliveryType: json.RawMessage(`{"code":"demo-delivery"}`),
				BillingInfo:  json.RawMessage(`{"price":10}`),
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			t.Cleanup(srv.Close)
			c := crm.New(testOptions())

			info, err := c.EditModule(context.Background(), srv.URL, recordedKey, recordedModule())
			if tt.wantErr == nil {
				require.NoError(t, err)
				assertRawJSON(t, tt.wantInfo.DeliveryType, info.DeliveryType, "deliveryType")
				assertRawJSON(t, tt.wantInfo.BillingInfo, info.BillingInfo, "billingInfo")
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
			var ce *crm.Error
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.status, ce.Status)
			assert.Equal(t, tt.wantReason, ce.Reason())
			assert.True(t, utf8.ValidString(ce.Reason()))
		})
	}
}

func TestOnAttemptReportsEveryExchange(t *testing.T) {
	const key = "key-attempts"
	fake := crmtest.New(t, crmtest.Edit(key,
		crmtest.Status(http.StatusServiceUnavailable),
		crmtest.Status(http.StatusTooManyRequests),
		crmtest.OK(),
	))
	var seen attempts
	opts := testOptions()
	opts.OnAttempt = seen.record
	c := crm.New(opts)

	_, err := c.EditModule(context.Background(), fake.URL, key, recordedModule())
	require.NoError(t, err)
	_, err = c.FetchCredentials(context.Background(), fake.URL, key)
	require.NoError(t, err)

	got := seen.all()
	require.Len(t, got, 4, "three edit attempts and one credentials call")
	wantOps := []string{"edit", "edit", "edit", "credentials"}
	wantStatus := []int{503, 429, 200, 200}
	wantRetry := []bool{false, true, true, false}
	for i, a := range got {
		assert.Equal(t, wantOps[i], a.Op, "attempt %d op", i)
		assert.Equal(t, wantStatus[i], a.Status, "attempt %d status", i)
		assert.Equal(t, wantRetry[i], a.Retry, "attempt %d retry", i)
		assert.NoError(t, a.Err, "attempt %d", i)
		assert.GreaterOrEqual(t, a.Duration, time.Duration(0))
	}
	assert.Len(t, fake.Calls(), 4, "one attempt is one request")
}

// The client keeps no cookies: a CRM that sets one does not get it back
// (resty's default cookie jar would keep every shop's cookies for the
// life of the process).
func TestClientKeepsNoCookies(t *testing.T) {
	const key = "key-cookie"
	withCookie := crmtest.OK()
	withCookie.Header = map[string]string{"Content-Type": "application/json", "Set-Cookie": "session=abc; Path=/"}
	fake := crmtest.New(t, crmtest.Edit(key, withCookie, crmtest.OK()))
	c := crm.New(testOptions())
	for range 2 {
		_, err := c.EditModule(context.Background(), fake.URL, key, recordedModule())
		require.NoError(t, err)
	}
	edits := fake.Edits()
	require.Len(t, edits, 2)
	assert.Empty(t, edits[1].Header.Get("Cookie"))
}
