package tokens_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/tokens"
)

// clock is a fake clock, safe to read from the verifier's fetches.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// issuerAt is an issuer whose tokens are issued at clk's time, so they
// stay valid however far a test moves the clock.
func issuerAt(t *testing.T, clk *clock, seeds ...[]byte) *tokens.Issuer {
	t.Helper()
	iss := newIssuer(t, seeds...)
	iss.SetClock(clk.Now)
	return iss
}

func issue(t *testing.T, iss *tokens.Issuer) string {
	t.Helper()
	tok, err := iss.Issue("acc-1", "https://shop.retailcrm.ru")
	require.NoError(t, err)
	return tok.Token
}

// One verifier, as a worker keeps it: once a key leaves the JWKS, its
// tokens stop verifying when the cached set expires, not never.
func TestADroppedKeyStopsVerifyingWhenTheCachedJWKSExpires(t *testing.T) {
	clk := &clock{t: t0}
	seedA, seedB := tokens.NewSeed(), tokens.NewSeed()
	both := issuerAt(t, clk, seedB, seedA)
	srv := newJWKSServer(t, both.JWKS())
	srv.setCacheControl("public, max-age=300") // what the service sends
	v := &tokens.Verifier{JWKSURL: srv.URL, Issuer: issuer, Audience: audience, Now: clk.Now}
	ctx := t.Context()

	onlyA := issuerAt(t, clk, seedA)
	_, err := v.Verify(ctx, issue(t, onlyA))
	require.NoError(t, err)
	require.Equal(t, 1, srv.count())

	srv.set(issuerAt(t, clk, seedB).JWKS()) // A is dropped from TOKEN_SIGNING_KEY
	clk.Add(299 * time.Second)
	_, err = v.Verify(ctx, issue(t, onlyA))
	assert.NoError(t, err, "within max-age the cached set answers")
	assert.Equal(t, 1, srv.count(), "no fetch before the set expires")

	clk.Add(time.Second)
	_, err = v.Verify(ctx, issue(t, onlyA))
	assert.ErrorIs(t, err, tokens.ErrInvalid, "after max-age the dropped key is refused")
	assert.Equal(t, 2, srv.count(), "the expired set was fetched again")
	_, err = v.Verify(ctx, issue(t, both))
	assert.NoError(t, err, "the key still listed verifies")
	assert.Equal(t, 2, srv.count())
}

// The reply's Cache-Control decides how long the set is used, within
// bounds: a proxy's "a day" cannot pin a dropped key for a day.
func TestTheJWKSIsCachedForItsMaxAgeWithinBounds(t *testing.T) {
	for _, tt := range []struct {
		name, cacheControl, age string
		want                    time.Duration
	}{
		{"its max-age", "public, max-age=60", "", time.Minute},
		{"no Cache-Control: 5 minutes", "", "", tokens.DefaultJWKSMaxAge},
		{"a day is held to 15 minutes", "max-age=86400", "", tokens.MaxJWKSMaxAge},
		{"less the Age an HTTP cache added", "max-age=120", "90", 30 * time.Second},
		{"no-store: 10 s, not every call", "no-store", "", 10 * time.Second},
		{"max-age=0: 10 s", "max-age=0", "", 10 * time.Second},
		{"an unreadable max-age: 5 minutes", "max-age=soon", "", tokens.DefaultJWKSMaxAge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clk := &clock{t: t0}
			iss := issuerAt(t, clk, tokens.NewSeed())
			srv := newJWKSServer(t, iss.JWKS())
			srv.setCacheControl(tt.cacheControl)
			v := &tokens.Verifier{JWKSURL: srv.URL, Issuer: issuer, Audience: audience, Now: clk.Now}
			if tt.age != "" {
				v.Client = &http.Client{Transport: withAge{tt.age}}
			}
			_, err := v.Verify(t.Context(), issue(t, iss))
			require.NoError(t, err)
			clk.Add(tt.want - time.Second)
			_, err = v.Verify(t.Context(), issue(t, iss))
			require.NoError(t, err)
			assert.Equal(t, 1, srv.count(), "cached until then")
			clk.Add(time.Second)
			_, err = v.Verify(t.Context(), issue(t, iss))
			require.NoError(t, err)
			assert.Equal(t, 2, srv.count(), "fetched again once expired")
		})
	}
}

// withAge adds an Age header to every reply, as an HTTP cache does.
type withAge struct{ age string }

func (a withAge) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		resp.Header.Set("Age", a.age)
	}
	return resp, err
}

// A failed refresh is retried after 10 s, then 20 s, 40 s…, never more
// often; meanwhile the set last fetched keeps verifying for 30 minutes
// past its expiry, then nothing does until a fetch succeeds.
func TestAFailedRefreshBacksOffAndTheLastSetServesForAWhile(t *testing.T) {
	clk := &clock{t: t0}
	iss := issuerAt(t, clk, tokens.NewSeed())
	srv := newJWKSServer(t, iss.JWKS())
	srv.setCacheControl("max-age=60")
	v := &tokens.Verifier{JWKSURL: srv.URL, Issuer: issuer, Audience: audience, Now: clk.Now}
	ctx := t.Context()
	verify := func() error {
		_, err := v.Verify(ctx, issue(t, iss))
		return err
	}
	require.NoError(t, verify())
	require.Equal(t, 1, srv.count())

	srv.setStatus(http.StatusServiceUnavailable)
	clk.Add(time.Minute) // expired
	assert.NoError(t, verify(), "the refresh failed: the last set still answers")
	assert.Equal(t, 2, srv.count())
	assert.NoError(t, verify())
	clk.Add(9 * time.Second)
	assert.NoError(t, verify())
	assert.Equal(t, 2, srv.count(), "no retry within 10 s of a failure")
	clk.Add(time.Second)
	assert.NoError(t, verify())
	assert.Equal(t, 3, srv.count(), "retried after 10 s")
	clk.Add(19 * time.Second)
	assert.NoError(t, verify())
	assert.Equal(t, 3, srv.count(), "the second failure waits 20 s")
	clk.Add(time.Second)
	assert.NoError(t, verify())
	assert.Equal(t, 4, srv.count())

	forged := issuerAt(t, clk, tokens.NewSeed())
	_, err := v.Verify(ctx, issue(t, forged))
	assert.ErrorIs(t, err, tokens.ErrUnavailable, "an unknown kid while the JWKS cannot be read: no verdict")
	assert.NotErrorIs(t, err, tokens.ErrInvalid)
	assert.Equal(t, 4, srv.count(), "an unknown kid does not skip the backoff")

	clk.Add(tokens.MaxJWKSStale - 31*time.Second) // just before 30 min past the expiry
	assert.NoError(t, verify())
	clk.Add(time.Second) // 30 min past it
	err = verify()
	assert.ErrorIs(t, err, tokens.ErrUnavailable, "too old to trust: refused until a fetch succeeds")
	assert.NotErrorIs(t, err, tokens.ErrInvalid)

	srv.setStatus(http.StatusOK)
	n := srv.count()
	clk.Add(5 * time.Minute) // the longest backoff
	assert.NoError(t, verify(), "a successful fetch ends it")
	assert.Equal(t, n+1, srv.count())
	assert.NoError(t, verify())
	assert.Equal(t, n+1, srv.count(), "and the backoff is over: cached again")
}

// The fetch is made outside the verifier's lock, once for all who need
// it: a verification whose key is cached never waits for a slow fetch, and
// the ones that need it share it.
func TestVerificationsDoNotQueueBehindASlowFetch(t *testing.T) {
	clk := &clock{t: t0}
	seedA, seedB := tokens.NewSeed(), tokens.NewSeed()
	onlyA := issuerAt(t, clk, seedA)
	srv := newJWKSServer(t, onlyA.JWKS())
	v := &tokens.Verifier{JWKSURL: srv.URL, Issuer: issuer, Audience: audience, Now: clk.Now}
	waiting := make(chan struct{}, 16)
	tokens.SetOnWait(v, func() { waiting <- struct{}{} })
	ctx := t.Context()
	tokA := issue(t, onlyA)
	_, err := v.Verify(ctx, tokA)
	require.NoError(t, err)
	await(t, waiting, "the first fetch's own waiter")

	rotated := issuerAt(t, clk, seedB, seedA)
	srv.set(rotated.JWKS())
	open := srv.hold(t)
	clk.Add(11 * time.Second) // an unknown kid may refresh again
	tokB := issue(t, rotated)

	const n = 3
	results := make(chan error, n+1)
	for range n {
		go func() {
			_, err := v.Verify(ctx, tokB)
			results <- err
		}()
	}
	leaving, leave := context.WithCancel(ctx)
	go func() {
		_, err := v.Verify(leaving, tokB)
		results <- err
	}()
	for range n + 1 {
		await(t, waiting, "every verification of the new kid waits")
	}
	await(t, srv.arrived, "one fetch is under way, and all of them wait for it")

	known := make(chan error, 1)
	go func() {
		_, err := v.Verify(ctx, tokA)
		known <- err
	}()
	select {
	case err := <-known:
		assert.NoError(t, err, "a cached key verifies while the fetch hangs")
	case <-time.After(guard):
		t.Fatal("a verification of a cached key waited for the fetch")
	}

	leave()
	assert.ErrorIs(t, <-results, context.Canceled, "a caller that leaves stops waiting")
	open()
	for range n {
		assert.NoError(t, <-results, "the new key, learnt by the one fetch")
	}
	assert.Equal(t, 2, srv.count(), "one fetch for all of them")
}

// guard bounds a wait for an event that should come at once: it turns a
// hang into a failure, and times nothing.
const guard = 10 * time.Second

func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(guard):
		t.Fatal("did not happen: " + what)
	}
}
