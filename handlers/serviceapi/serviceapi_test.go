package serviceapi_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/store/storetest"
)

func TestTokensOpenOnlyTheirOwnAPI(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, nil)
		acc := e.connect("key-tokens")
		creds := "/service/api/accounts/" + acc.ID + "/credentials"

		assert.Equal(t, 200, e.get(creds, serviceToken).StatusCode)
		assert.Equal(t, 200, e.get(creds, oldServiceToken).StatusCode, "a rotated-out token still opens it")
		assert.Equal(t, 200, e.get("/admin/api/accounts", adminToken).StatusCode)

		r := e.get(creds, adminToken)
		assert.Equal(t, "unauthorized", r.problem(t, 401), "an admin token never opens the service API")
		assert.Contains(t, r.Header.Get("WWW-Authenticate"), `realm="service"`)
		r = e.get("/admin/api/accounts", serviceToken)
		assert.Equal(t, "unauthorized", r.problem(t, 401), "a service token never opens the admin API")
		r = e.get("/admin/api/accounts/"+acc.ID, serviceToken)
		assert.Equal(t, "unauthorized", r.problem(t, 401))

		for name, tok := range map[string]string{
			"none": "", "a prefix": serviceToken[:12], "longer": serviceToken + "x", "wrong": "service-token-wrong-00000",
		} {
			assert.Equal(t, "unauthorized", e.get(creds, tok).problem(t, 401), name)
		}
		r = e.call(0, "GET", creds, "", nil, http.Header{"Authorization": {"Basic " + serviceToken}})
		assert.Equal(t, "unauthorized", r.problem(t, 401), "bearer only")
	})
}

func TestWithoutServiceTokensTheAPIDoesNotExist(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, nil, withoutServiceTokens())
		acc := e.connect("key-off")
		for _, tok := range []string{"", serviceToken, adminToken} {
			r := e.get("/service/api/accounts/"+acc.ID+"/credentials", tok)
			assert.Equal(t, "not_found", r.problem(t, 404))
			r = e.get("/service/api/accounts/"+acc.ID+"/crm/api/v5/orders", tok)
			assert.Equal(t, "not_found", r.problem(t, 404))
		}
		assert.Len(t, e.fake.Calls(), 2, "only the register's two calls")
	})
}

type credentials struct {
	ID        string            `json:"id"`
	SystemURL string            `json:"systemUrl"`
	APIKey    string            `json:"apiKey"`
	Active    bool              `json:"active"`
	Frozen    bool              `json:"frozen"`
	Settings  map[string]string `json:"settings"`
}

func TestCredentialsOfEachKindOfAccount(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, []crmtest.Option{crmtest.Edit("key-never", crmtest.Status(503))})
		acc := e.connect("key-creds")

		r := e.get("/service/api/accounts/"+acc.ID+"/credentials", serviceToken)
		require.Equal(t, 200, r.StatusCode, r.body)
		assert.Equal(t, "no-store", r.Header.Get("Cache-Control"))
		var c credentials
		require.NoError(t, json.Unmarshal([]byte(r.body), &c))
		assert.Equal(t, credentials{ID: acc.ID, SystemURL: e.fake.URL, APIKey: "key-creds", Active: true, Settings: map[string]string{}}, c)

		_, err := e.store().SetActivity(t.Context(), acc.ID, store.State{}, store.Lease{})
		require.NoError(t, err)
		r = e.get("/service/api/accounts/"+acc.ID+"/credentials", serviceToken)
		require.Equal(t, 200, r.StatusCode, "a switched-off shop's key is still its key")
		require.NoError(t, json.Unmarshal([]byte(r.body), &c))
		assert.False(t, c.Active)
		assert.Equal(t, "key-creds", c.APIKey)

		for _, id := range []string{"01AAAAAAAAAAAAAAAAAAAAAAAA", "not-an-id", strings.ToLower(acc.ID)} {
			assert.Equal(t, "not_found", e.get("/service/api/accounts/"+id+"/credentials", serviceToken).problem(t, 404), id)
		}

		// A key the health check found dead is not handed out: 409 naming
		// the state, nothing of the key, no credentials.read event.
		_, err = e.store().SetActivity(t.Context(), acc.ID, store.State{Active: true}, store.Lease{})
		require.NoError(t, err)
		events, err := e.store().Events(t.Context(), "", 1000)
		require.NoError(t, err)
		for _, tt := range []struct {
			health  store.KeyHealth
			missing []string
		}{{store.KeyRevoked, nil}, {store.KeyScopesMissing, []string{"order_write"}}} {
			_, _, err = e.store().SetKeyHealth(t.Context(), acc.ID, acc.KeySeq, tt.health, tt.missing)
			require.NoError(t, err)
			r = e.get("/service/api/accounts/"+acc.ID+"/credentials", serviceToken)
			assert.Equal(t, string(tt.health), r.problem(t, 409))
			assert.Contains(t, r.body, string(tt.health), "the problem names the state")
			assert.Empty(t, r.Header.Values("X-Api-Key"))
			e.assertNoKeyIn(r.body)
		}
		after, err := e.store().Events(t.Context(), "", 1000)
		require.NoError(t, err)
		for _, ev := range after[len(events):] {
			assert.NotEqual(t, store.EventCredentialsRead, ev.Type, "a refused read is no read")
		}
		assert.Equal(t, "1", e.metric(`simpleconnect_credentials_reads_total{outcome="key_revoked"}`))
		assert.Equal(t, "1", e.metric(`simpleconnect_credentials_reads_total{outcome="scopes_missing"}`))

		e.fake = crmtest.New(t, crmtest.Edit("key-never", crmtest.Status(503)))
		pending := e.connect("key-never")
		require.Equal(t, store.StatusPending, pending.Status())
		r = e.get("/service/api/accounts/"+pending.ID+"/credentials", serviceToken)
		assert.Equal(t, "not_connected", r.problem(t, 409))
		assert.Contains(t, r.body, "pending", "the problem names the state")
		e.assertNoKeyIn(r.body)
	})
}

func TestEveryCredentialsReadIsAnEventWithoutTheKey(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, nil)
		acc := e.connect("key-audit")
		before, err := e.store().Events(t.Context(), "", 1000)
		require.NoError(t, err)

		require.Equal(t, 200, e.get("/service/api/accounts/"+acc.ID+"/credentials", oldServiceToken).StatusCode)
		require.Equal(t, 404, e.get("/service/api/accounts/01AAAAAAAAAAAAAAAAAAAAAAAA/credentials", serviceToken).StatusCode)

		events, err := e.store().Events(t.Context(), "", 1000)
		require.NoError(t, err)
		require.Len(t, events, len(before)+1, "one read, one event; a refused read is none")
		ev := events[len(events)-1]
		sum := sha256.Sum256([]byte(oldServiceToken))
		assert.Equal(t, store.EventCredentialsRead, ev.Type)
		assert.Equal(t, acc.ID, ev.AccountID)
		assert.Equal(t, e.fake.URL, ev.SystemURL)
		assert.Equal(t, store.StatusActive, ev.Status)
		assert.Equal(t, hex.EncodeToString(sum[:6]), ev.Reader, "which token read: its digest's prefix")

		raw, err := b.Raw.XRange(t.Context(), e.store().EventsStream(), "-", "+").Result()
		require.NoError(t, err)
		for _, m := range raw {
			for _, v := range m.Values {
				e.assertNoKeyIn(v.(string))
			}
		}
		assert.Equal(t, "1", e.metric(`simpleconnect_credentials_reads_total{outcome="ok"}`))
		assert.Equal(t, "1", e.metric(`simpleconnect_credentials_reads_total{outcome="not_found"}`))
	})
}

func TestTheProxyRefusesEveryEscapeAndSendsNothing(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, nil)
		acc := e.connect("key-escape")
		base := "/service/api/accounts/" + acc.ID + "/crm/"
		calls := len(e.fake.Calls())
		for _, p := range []string{
			"api/../../credentials", "api/v5/../../../../admin/api/accounts", "api/./v5/orders", "api/v5/orders/..",
			"api//v5/orders", "api%2F..%2F..%2Fcredentials", "api/v5%2forders", "api/%2e%2e/%2e%2e/credentials",
			"api/%2E%2E/x", "api/.%2e/x", "api/%252e%252e/x", "api%5c..%5cadmin", "api/v5/orders%00",
			"https://evil.example/api/v5/orders", "https:%2F%2Fevil.example/api/v5/orders", "/evil.example/api/v5/orders",
			"%2Fevil.example/api/v5", "admin/api/accounts", "API/v5/orders", "v5/orders", "", "api",
		} {
			r := e.call(0, "GET", base+p, serviceToken, nil, nil)
			assert.Equal(t, "bad_path", r.problem(t, 400), p)
		}
		r := e.call(0, "TRACE", base+"api/v5/orders", serviceToken, nil, nil)
		assert.Equal(t, 405, r.StatusCode)
		assert.Len(t, e.fake.Calls(), calls, "no escape reached the CRM")
		assert.Equal(t, "1", e.metric(`simpleconnect_crm_proxy_requests_total{method="other",outcome="method_not_allowed"}`))
	})
}

func TestTheProxyDropsTheCallersCredentialsAndInjectsTheShopsKey(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, []crmtest.Option{crmtest.API("GET", "/api/v5/reference/sites", crmtest.Reply{
			Status: 200, Body: `{"success":true,"sites":{}}`,
			Header: map[string]string{
				"Content-Type": "application/json; charset=UTF-8", "Set-Cookie": "crm_session=x",
				"X-Powered-By": "crm-internals", "Location": "http://10.0.0.1/",
			},
		})})
		acc := e.connect("key-headers")
		e.secrets = append(e.secrets, "callers-own-key")
		base := "/service/api/accounts/" + acc.ID + "/crm/"

		order := `{"number":"A-1","firstName":"Ann"}`
		form := url.Values{"order": {order}, "site": {"main"}}.Encode()
		r := e.call(0, "POST", base+"api/v5/orders/create?trace=1", serviceToken, strings.NewReader(form), http.Header{
			"Content-Type":    {"application/x-www-form-urlencoded"},
			"Cookie":          {"session=abc"},
			"X-Api-Key":       {"callers-own-key"},
			"Connection":      {"X-Hop"},
			"X-Hop":           {"1"},
			"Keep-Alive":      {"timeout=5"},
			"X-Forwarded-For": {"10.1.2.3"},
			"X-Request-Id":    {"req-1"},
		})
		require.Equal(t, 201, r.StatusCode, r.body)
		assert.Contains(t, r.Header.Get("Content-Type"), "application/json")
		assert.Contains(t, r.body, `"success":true`)
		got := e.fake.Calls()[len(e.fake.Calls())-1]
		assert.Equal(t, "/api/v5/orders/create", got.Path)
		assert.Equal(t, "trace=1", got.RawQuery, "the query as sent")
		assert.Equal(t, form, string(got.Body), "the body as sent")
		assert.Equal(t, []string{"key-headers"}, got.Header.Values("X-Api-Key"), "the shop's key, only")
		for _, h := range []string{"Authorization", "Cookie", "X-Hop", "Keep-Alive", "X-Forwarded-For"} {
			assert.Empty(t, got.Header.Values(h), h)
		}
		assert.Equal(t, "req-1", got.Header.Get("X-Request-Id"))
		require.Len(t, e.fake.Orders("key-headers"), 1)

		r = e.call(0, "GET", base+"api/v5/reference/sites", serviceToken, nil, nil)
		require.Equal(t, 200, r.StatusCode)
		assert.Equal(t, "application/json; charset=UTF-8", r.Header.Get("Content-Type"))
		for _, h := range []string{"Set-Cookie", "X-Powered-By", "Location"} {
			assert.Empty(t, r.Header.Values(h), "the CRM's %s stays with the CRM", h)
		}
		e.assertNoKeyIn(r.body)
		e.assertNoKeyIn(e.logs.String())
		assert.Equal(t, "1", e.metric(`simpleconnect_crm_proxy_requests_total{method="POST",outcome="crm_2xx"}`))
	})
}

func TestTheProxySendsNothingForAShopThatIsNotActive(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, nil)
		acc := e.connect("key-states")
		path := "/service/api/accounts/" + acc.ID + "/crm/api/v5/orders"
		_, err := e.store().SetActivity(t.Context(), acc.ID, store.State{Active: true, Frozen: true}, store.Lease{})
		require.NoError(t, err)
		r := e.get(path, serviceToken)
		assert.Equal(t, "frozen", r.problem(t, 409))
		assert.Contains(t, r.body, "frozen")

		_, err = e.store().SetActivity(t.Context(), acc.ID, store.State{}, store.Lease{})
		require.NoError(t, err)
		r = e.get(path, serviceToken)
		assert.Equal(t, "inactive", r.problem(t, 409))
		assert.Contains(t, r.body, "inactive")

		_, err = e.store().SetActivity(t.Context(), acc.ID, store.State{Active: true}, store.Lease{})
		require.NoError(t, err)
		_, _, err = e.store().SetKeyHealth(t.Context(), acc.ID, acc.KeySeq, store.KeyRevoked, nil)
		require.NoError(t, err)
		r = e.get(path, serviceToken)
		assert.Equal(t, "key_revoked", r.problem(t, 409), "a key the health check found refused is not tried")
		assert.Contains(t, r.body, "key_revoked")
		_, _, err = e.store().SetKeyHealth(t.Context(), acc.ID, acc.KeySeq, store.KeyScopesMissing, []string{"order_write"})
		require.NoError(t, err)
		r = e.get(path, serviceToken)
		assert.Equal(t, "scopes_missing", r.problem(t, 409), "a key short of a scope the module needs is not tried either")
		assert.Contains(t, r.body, "scopes_missing")

		first := e.fake
		e.fake = crmtest.New(t, crmtest.Edit("key-pending", crmtest.Status(503)))
		pending := e.connect("key-pending")
		r = e.get("/service/api/accounts/"+pending.ID+"/crm/api/v5/orders", serviceToken)
		assert.Equal(t, "not_connected", r.problem(t, 409))
		assert.Contains(t, r.body, "pending")
		assert.Equal(t, 404, e.get("/service/api/accounts/01AAAAAAAAAAAAAAAAAAAAAAAA/crm/api/v5/orders", serviceToken).StatusCode)

		orders := 0
		for _, c := range append(first.Calls(), e.fake.Calls()...) {
			if c.Path == "/api/v5/orders" {
				orders++
			}
		}
		assert.Zero(t, orders, "no call reached a CRM's API")
		assert.Equal(t, "1", e.metric(`simpleconnect_crm_proxy_requests_total{method="GET",outcome="scopes_missing"}`))
	})
}

func TestACRMRefusalThroughTheProxyChangesNothing(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, []crmtest.Option{crmtest.API("GET", "/api/v5/orders", crmtest.Status(401), crmtest.Status(403))})
		acc := e.connect("key-refused")
		before, err := e.store().Events(t.Context(), "", 1000)
		require.NoError(t, err)

		path := "/service/api/accounts/" + acc.ID + "/crm/api/v5/orders"
		r := e.get(path, serviceToken)
		assert.Equal(t, 401, r.StatusCode, "the CRM's answer, as it gave it")
		assert.Contains(t, r.body, "apiKey")
		assert.Equal(t, 403, e.get(path, serviceToken).StatusCode)

		after, err := e.store().Get(t.Context(), acc.ID)
		require.NoError(t, err)
		assert.Equal(t, store.StatusActive, after.Status(), "a refusal through the proxy is the caller's news, not a state change")
		assert.Equal(t, acc.APIKey, after.APIKey)
		events, err := e.store().Events(t.Context(), "", 1000)
		require.NoError(t, err)
		assert.Len(t, events, len(before), "no event")
		assert.Equal(t, "2", e.metric(`simpleconnect_crm_proxy_requests_total{method="GET",outcome="crm_4xx"}`))
	})
}

// Forty calls at once for one shop, through two replicas sharing Redis:
// each reaches the CRM, at most ten in any second there (CRM_RATE_PER_SECOND
// is 10).
func TestFortyConcurrentCallsReachTheCRMAtTenASecondAcrossReplicas(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, nil)
		e.replica()
		acc := e.connect("key-rate")
		path := "/service/api/accounts/" + acc.ID + "/crm/api/v5/orders"

		var wg sync.WaitGroup
		statuses := make([]int, 40)
		for i := range statuses {
			wg.Go(func() { statuses[i] = e.call(i%2, "GET", path, serviceToken, nil, nil).StatusCode })
		}
		wg.Wait()
		for i, s := range statuses {
			assert.Equal(t, 200, s, "call %d waited its turn and went through", i)
		}
		isOrders := func(c crmtest.Call) bool { return c.Path == "/api/v5/orders" }
		// The pacer spaces a shop's calls 105 ms apart (a 5% margin for the
		// way there). What the fake CRM records is when its handler ran,
		// which on a loaded test machine can lag a call by more than the
		// 50 ms that margin covers and bunch two arrivals; so the window
		// here leaves 50 ms of that lag, and still fits ten turns and no
		// eleventh (ten intervals are 1.05 s).
		window := time.Second - 50*time.Millisecond
		assert.LessOrEqual(t, e.fake.MaxInWindow(window, isOrders), 10, "the CRM saw at most 10 in any second")
		n := 0
		for _, c := range e.fake.Calls() {
			if isOrders(c) {
				n++
			}
		}
		assert.Equal(t, 40, n)
	})
}

func TestPastTheBoundedWaitTheProxyAnswers429WithRetryAfter(t *testing.T) {
	eachRedis(t, func(t *testing.T, b *storetest.Backend) {
		e := newEnv(t, b, nil, withRate(1, time.Nanosecond)) // a slot now, none to wait for
		acc := e.connect("key-429")
		path := "/service/api/accounts/" + acc.ID + "/crm/api/v5/orders"
		require.Equal(t, 200, e.get(path, serviceToken).StatusCode)
		calls := len(e.fake.Calls())
		r := e.get(path, serviceToken)
		assert.Equal(t, "crm_rate_limited", r.problem(t, 429))
		assert.Contains(t, []string{"1", "2"}, r.Header.Get("Retry-After"), "about 1.05 s to the next slot, in whole seconds, rounded up")
		assert.Len(t, e.fake.Calls(), calls, "nothing sent")
		assert.Equal(t, "1", e.metric(`simpleconnect_crm_proxy_requests_total{method="GET",outcome="crm_rate_limited"}`))
	})
}
