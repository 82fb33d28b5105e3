package handlers_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/config"
	"github.com/modulehub/simpleconnect/crm/crmtest"
	"github.com/modulehub/simpleconnect/handlers"
	"github.com/modulehub/simpleconnect/ratelimit"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/verify"
)

// The texts a limit answers with (the English catalog).
const (
	tooManyFailures = "Too many failed requests came from this address. Try again in a few minutes."
	shopBusy        = "Too many attempts for this shop. Try again in a minute."
	badTokenMsg     = "The connection request has an invalid token: this module's secret does not match. Please tell the module's developer."
	unknownClient   = "This module is not connected to your CRM any more. Connect it again from the CRM marketplace."
)

// freezeLimiterClock stops the clock the limits read (Redis's TIME), so a
// budget does not refill while a test runs and counts are exact.
func (h *harness) freezeLimiterClock() { h.mr.SetTime(time.Now()) }

// postRegister sends a register and returns the reply with its headers.
func (h *harness) postRegister(apiKey, systemURL, token string) (*http.Response, webhookReply) {
	h.t.Helper()
	return h.postRegisterWith(apiKey, systemURL, token, nil)
}

// callback sends an activity callback (the clientId is remembered by the
// caller, once).
func (h *harness) callback(clientID, activity string) webhookReply {
	h.t.Helper()
	resp, body := h.postForm("/activity", url.Values{"clientId": {clientID}, "activity": {activity}})
	return decodeWebhook(h.t, resp, body)
}

// The CRM calls from a few addresses for every shop. With the default
// limits, a wave of 300 shops connecting and 1,000 activity callbacks from
// one address is never refused, even while that same address sends more
// failures than its budget allows (callbacks for accounts that are gone).
func TestTheCRMsTrafficIsNeverRefused(t *testing.T) {
	h := newHarness(t, nil, withLimits())
	h.freezeLimiterClock()
	const shops, callbacks, failing = 300, 1000, 100

	clientIDs := make([]string, shops)
	failures, refused := 0, 0
	fail := func() {
		failures++
		r := h.callback(fmt.Sprintf("gone-client-%04d-%s", failures, strings.Repeat("x", 30)), `{"active":false}`)
		require.False(t, r.Success)
		if r.ErrorMsg == tooManyFailures {
			refused++
		} else {
			assert.Equal(t, unknownClient, r.ErrorMsg)
		}
	}
	for i := range shops {
		key := fmt.Sprintf("wave-key-%03d", i)
		r := h.register(key, h.shopURL(i))
		require.True(t, r.Success, "register %d was refused: %s", i, r.ErrorMsg)
		clientIDs[i], _ = h.fake.Module(key)["clientId"].(string)
		require.NotEmpty(t, clientIDs[i])
		h.remember(clientIDs[i])
		if i%6 == 0 {
			fail()
		}
	}
	for i := range callbacks {
		r := h.callback(clientIDs[i%shops], fmt.Sprintf(`{"active":%v,"freeze":false}`, i/shops%2 == 1))
		require.True(t, r.Success, "callback %d was refused: %s", i, r.ErrorMsg)
		if i%20 == 0 {
			fail()
		}
	}
	for failures < failing {
		fail()
	}

	assert.Len(t, h.fake.Edits(), shops, "every shop reached its CRM once")
	assert.Equal(t, failing-config.DefaultFailedRequestsPerMinute, refused,
		"the address went over its failure budget: its failures past %d were refused", config.DefaultFailedRequestsPerMinute)
	last, err := h.store.FindByClientID(t.Context(), redact.Secret(clientIDs[shops-1]))
	require.NoError(t, err)
	assert.Equal(t, store.StatusInactive, last.Status(), "the last callbacks (active:false) were applied")
}

// 200 bad-token registers from one address: past the budget they are
// refused without a Redis command or a CRM call, with Retry-After; a valid
// register from the same address right after still connects, and a known
// clientId still signs in.
func TestBadTokensAreRefusedFastAndValidRequestsStillPass(t *testing.T) {
	h := newHarness(t, nil, withLimits())
	h.freezeLimiterClock()
	budget := config.DefaultFailedRequestsPerMinute
	known := h.connected("key-known") // before the flood: its one CRM exchange is done
	callsBefore := len(h.fake.Calls())

	bad := verify.Sign("not-our-secret", "key-bad")
	for i := range 200 {
		commands := h.mr.CommandCount()
		resp, r := h.postRegister("key-bad", h.fake.URL, bad)
		require.False(t, r.Success)
		if i < budget {
			assert.Equal(t, badTokenMsg, r.ErrorMsg, "failure %d is within the budget", i+1)
			assert.Empty(t, resp.Header.Get("Retry-After"))
			continue
		}
		assert.Equal(t, tooManyFailures, r.ErrorMsg, "failure %d is past the budget", i+1)
		assert.NotEmpty(t, resp.Header.Get("Retry-After"))
		if i > budget { // the first one past asked Redis; the replica remembers
			assert.Equal(t, commands, h.mr.CommandCount(), "failure %d was refused without a Redis command", i+1)
		}
	}
	assert.Len(t, h.fake.Calls(), callsBefore, "no failure reached a CRM")

	r := h.register("key-good", h.shopURL(1))
	assert.True(t, r.Success, "a valid register from the same address connects: %s", r.ErrorMsg)
	resp, cookie := h.login(known.ClientID.Reveal())
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode, "a known clientId from the same address signs in")
	assert.NotNil(t, cookie)
	h.remember(known.ClientID.Reveal())
	assert.True(t, h.callback(known.ClientID.Reveal(), `{"active":true}`).Success, "and calls back")

	resp, _ = h.postForm("/account", url.Values{"clientId": {"unknown-client-id"}})
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "an unknown clientId from it gets the page's 429")

	assert.Contains(t, h.logs.String(), "over its failure budget", "the address going over is logged")
	assert.Equal(t, 1, strings.Count(h.logs.String(), "over its failure budget"), "once, not per refused request")
}

// 100 replays of one valid register pair reach the shop's CRM only as many
// times as the bound allows; the rest are answered from the stored state:
// success, since the key is the shop's active key.
func TestReplayedRegistersAreAnsweredFromTheStoredState(t *testing.T) {
	// CRM_TIMEOUT 30 s: a register past the bound that waited for an
	// attempt long over would take 31 s (answered tests below at once).
	h := newHarness(t, nil, withLimits(), func(c *config.Config) { c.CRMTimeout = 30 * time.Second })
	h.freezeLimiterClock()
	bound := config.DefaultShopKeyAttemptsPerMinute
	shop := h.shopURL(7)

	for i := range 100 {
		r := h.register("key-replayed", shop)
		require.True(t, r.Success, "replay %d: %s", i+1, r.ErrorMsg)
		assert.Equal(t, "http://module.test/account", r.AccountURL)
	}
	assert.Len(t, h.fake.Edits(), bound, "the shop's CRM saw %d edits, not 100", bound)
	assert.Len(t, h.fake.Calls(), 2*bound, "and as many key checks")

	r := h.register("key-rotated", shop)
	require.True(t, r.Success, "a new key for the same shop is a new attempt: %s", r.ErrorMsg)
	assert.Len(t, h.fake.Edits(), bound+1)

	r = h.registerWithin(10*time.Second, "key-replayed", shop)
	assert.False(t, r.Success, "the old key is no longer the active one")
	assert.Equal(t, shopBusy, r.ErrorMsg, "answered at once: its pair's last attempt ended long ago")
	assert.Len(t, h.fake.Edits(), bound+1, "and the CRM was not asked")

	acc, err := h.store.FindBySystemURL(t.Context(), shop)
	require.NoError(t, err)
	for range bound - 1 { // the new key's attempts left
		require.True(t, h.register("key-rotated", shop).Success)
	}
	h.remember(acc.ClientID.Reveal())
	require.True(t, h.callback(acc.ClientID.Reveal(), `{"active":false,"freeze":false}`).Success, "the CRM switches the module off")
	r = h.register("key-rotated", shop)
	assert.Equal(t, shopBusy, r.ErrorMsg, "past the bound, a switched-off shop is not told it is connected")
	assert.Len(t, h.fake.Edits(), 2*bound)
}

// A pair the CRM refuses is tried as often as the bound allows; then the
// shop's CRM is left alone.
func TestRefusedRegistersStopReachingTheCRM(t *testing.T) {
	h := newHarness(t, []crmtest.Option{crmtest.Credentials("key-unknown", crmtest.Status(401))}, withLimits())
	h.freezeLimiterClock()
	bound := config.DefaultShopKeyAttemptsPerMinute
	for i := range 20 {
		r := h.register("key-unknown", h.fake.URL)
		require.False(t, r.Success)
		if i < bound {
			assert.Contains(t, r.ErrorMsg, "does not know this API key", "attempt %d reaches the CRM", i+1)
		} else {
			assert.Equal(t, shopBusy, r.ErrorMsg, "attempt %d does not", i+1)
		}
	}
	assert.Len(t, h.fake.Calls(), bound)
	assert.Empty(t, h.fake.Edits())
}

// Switching off calls the shop's CRM with the account's key: it counts
// against the same pair's bound.
func TestDisconnectIsBoundedPerShopAndKey(t *testing.T) {
	h := newHarness(t, nil, func(c *config.Config) { c.ShopKeyAttemptsPerMinute = 1 })
	h.freezeLimiterClock()
	_, cookie, csrf := h.signedIn("key-disconnect-bound") // the register used the pair's one attempt
	edits := len(h.fake.Edits())
	resp, body := h.postForm("/account/disconnect", url.Values{"csrf": {csrf}}, cookie)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Contains(t, body, "Wait a minute, then try again.")
	assert.Len(t, h.fake.Edits(), edits, "the CRM was not called")
}

// When Redis behind the limits is unreachable, nothing is refused because
// of it: failures get their usual answer, valid registers connect.
func TestLimitsLetRequestsThroughWhenTheirRedisFails(t *testing.T) {
	h := newHarness(t, nil)
	dead := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: dead.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	dead.Close()
	srv := httptest.NewServer(handlers.New(handlers.Deps{
		Config: h.cfg, Log: slog.New(slog.DiscardHandler), Connector: stubConnector{},
		Accounts: h.store, Sessions: h.store, Store: h.store,
		Failures: ratelimit.NewFailures(rdb, "test", 1), Attempts: ratelimit.NewAttempts(rdb, "test", 1, 10*time.Second),
	}))
	t.Cleanup(srv.Close)
	h.srv = srv

	for range 3 {
		_, r := h.postRegister("key-x", h.fake.URL, verify.Sign("not-our-secret", "key-x"))
		assert.Equal(t, badTokenMsg, r.ErrorMsg)
	}
	for range 3 {
		r := h.register("key-x", h.fake.URL)
		assert.True(t, r.Success, r.ErrorMsg)
	}
}

// Past the bound, a register racing an attempt with the same key (a double
// click, several replicas, a replay loop started before the first answer)
// waits for that attempt and answers with its outcome: no failure, and the
// CRM sees one edit.
func TestRegistersPastTheBoundWaitForTheAttemptInFlight(t *testing.T) {
	gate := make(chan struct{})
	arrived := make(chan struct{}, 1)
	h := newHarness(t, []crmtest.Option{
		crmtest.Edit("key-double", crmtest.After(gate, crmtest.OK())),
		crmtest.OnCall(func(c crmtest.Call) {
			if strings.HasSuffix(c.Path, "/edit") {
				arrived <- struct{}{}
			}
		}),
	}, func(c *config.Config) { c.ShopKeyAttemptsPerMinute = 1 })
	h.freezeLimiterClock()
	shop := h.shopURL(3)
	// Each read of the shop's record, once armed, is seen here (the hook is
	// added before any request: go-redis hooks are not for changing live).
	reads := make(chan struct{}, 1000)
	hook := &readsOf{get: shop, seen: reads}
	h.store.Client().AddHook(hook)

	const clicks = 6
	replies := make(chan webhookReply, clicks)
	send := func() { replies <- h.register("key-double", shop) }
	go send()
	<-arrived // the first attempt is recorded and waits on the CRM

	// The others read the shop's record and find the attempt under way
	// before the CRM answers.
	hook.armed.Store(true)
	for range clicks - 1 {
		go send()
	}
	for range clicks - 1 {
		<-reads // (at least) one read per waiting register
	}
	close(gate)
	for range clicks {
		r := <-replies
		assert.True(t, r.Success, r.ErrorMsg)
	}
	assert.Len(t, h.fake.Edits(), 1, "one edit reached the CRM")
}

// readsOf reports, once armed, each GET whose key holds get (a store read
// by address).
type readsOf struct {
	get   string
	seen  chan<- struct{}
	armed atomic.Bool
}

func (*readsOf) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *readsOf) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if args := cmd.Args(); r.armed.Load() && cmd.Name() == "get" && len(args) == 2 && strings.Contains(fmt.Sprint(args[1]), r.get) {
			r.seen <- struct{}{}
		}
		return err
	}
}

func (*readsOf) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// The same, when the first attempt is still at the key check: the shop has
// no account yet, and the registers past the bound wait for it all the same.
func TestRegistersPastTheBoundWaitForAFirstAttemptNotYetRecorded(t *testing.T) {
	gate := make(chan struct{})
	arrived := make(chan struct{}, 1)
	ok := crmtest.Fixture(t, "credentials-ok").Reply()
	h := newHarness(t, []crmtest.Option{
		crmtest.Credentials("key-early", crmtest.After(gate, ok)),
		crmtest.OnCall(func(c crmtest.Call) {
			if strings.HasSuffix(c.Path, "/credentials") {
				select {
				case arrived <- struct{}{}:
				default:
				}
			}
		}),
	}, func(c *config.Config) { c.ShopKeyAttemptsPerMinute = 1 })
	h.freezeLimiterClock()
	shop := h.shopURL(4)
	reads := make(chan struct{}, 1000)
	hook := &readsOf{get: shop, seen: reads}
	h.store.Client().AddHook(hook)

	const clicks = 6
	replies := make(chan webhookReply, clicks)
	send := func() { replies <- h.register("key-early", shop) }
	go send()
	<-arrived // the first attempt asks the CRM about the key: nothing is stored yet
	hook.armed.Store(true)
	for range clicks - 1 {
		go send()
	}
	for range clicks - 1 {
		<-reads // each finds no account, and waits
	}
	close(gate)
	for range clicks {
		r := <-replies
		assert.True(t, r.Success, r.ErrorMsg)
	}
	assert.Len(t, h.fake.Edits(), 1, "one edit reached the CRM")
}

// A success is never told to the bound: a register past it reads the
// stored key instead. Once the CRM accepted the key and the shop was then
// switched off, a replay past the bound is answered at once, not after
// waiting out an attempt that already ended (CRM_TIMEOUT and a second: 31 s
// here).
func TestRegistersPastTheBoundDoNotWaitForAnAttemptThatSucceeded(t *testing.T) {
	h := newHarness(t, nil, func(c *config.Config) {
		c.ShopKeyAttemptsPerMinute = 1
		c.CRMTimeout = 30 * time.Second
	})
	h.freezeLimiterClock()
	acc := h.connected("key-done") // the pair's one attempt, a success
	require.True(t, h.callback(acc.ClientID.Reveal(), `{"active":false,"freeze":false}`).Success, "the CRM switches the module off")

	r := h.registerWithin(10*time.Second, "key-done", h.fake.URL)
	assert.Equal(t, shopBusy, r.ErrorMsg, "a switched-off shop is not told it is connected")
	assert.Len(t, h.fake.Edits(), 1, "the CRM saw the first register's edit only")
}

// registerWithin is register, failing the test when the reply takes longer
// than budget (generous: seconds, for a reply that should come at once).
func (h *harness) registerWithin(budget time.Duration, apiKey, systemURL string) webhookReply {
	h.t.Helper()
	reply := make(chan webhookReply, 1)
	go func() { reply <- h.register(apiKey, systemURL) }()
	select {
	case r := <-reply:
		return r
	case <-time.After(budget):
		h.t.Fatalf("no reply within %s: the register waited for an attempt that had ended", budget)
		return webhookReply{}
	}
}

// A shop switched off in the CRM is switched on again with the same key,
// and the click is doubled past the bound: the second register waits for
// the first, still at the CRM's key check, and answers with its outcome.
// (A key stored as accepted says nothing about an attempt under way: it was
// accepted by an earlier one.)
func TestADoubleClickPastTheBoundWaitsForAReconnectWithTheSameKey(t *testing.T) {
	gate := make(chan struct{})
	arrived := make(chan struct{}, 1)
	var checks atomic.Int32
	h := newHarness(t, []crmtest.Option{
		crmtest.OnCall(func(c crmtest.Call) {
			if strings.HasSuffix(c.Path, "/credentials") && checks.Add(1) == 2 {
				arrived <- struct{}{}
				<-gate // the reconnect's key check waits here
			}
		}),
	}, func(c *config.Config) { c.ShopKeyAttemptsPerMinute = 1 })
	h.freezeLimiterClock()
	reads := make(chan struct{}, 1000)
	hook := &readsOf{get: h.fake.URL, seen: reads}
	h.store.Client().AddHook(hook)
	acc := h.connected("key-again")
	require.True(t, h.callback(acc.ClientID.Reveal(), `{"active":false,"freeze":false}`).Success, "the CRM switches the module off")
	h.mr.SetTime(time.Now().Add(2 * time.Minute)) // the pair's slot is back

	first := make(chan webhookReply, 1)
	go func() { first <- h.register("key-again", h.fake.URL) }()
	<-arrived // the reconnect took the pair's slot and is at the key check
	hook.armed.Store(true)
	second := make(chan webhookReply, 1)
	go func() { second <- h.register("key-again", h.fake.URL) }()
	<-reads // the double click found the key accepted but the shop off: it decides now
	close(gate)
	assert.True(t, (<-first).Success)
	r := <-second
	assert.True(t, r.Success, "the double click answers with the reconnect's outcome: %s", r.ErrorMsg)
}
