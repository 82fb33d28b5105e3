package connect_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/connect"
	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/seal"
	"github.com/modulehub/simpleconnect/store"
	"github.com/modulehub/simpleconnect/store/storetest"
)

// The model-based tests drive the real connect.Service and store over
// random operation sequences and check, after every step, what must hold
// whatever the order: one account per shop address, a clientId that never
// changes, a stored key the CRM accepted, the CRM's state equal to the
// stored one once nothing is in flight, no reply "busy", every account
// readable at every step of the documented key rotation, and the store's
// own bookkeeping (indexes, the sweeper's queue, the per-key counts).
//
//	go test ./connect -run Model -count=1 -args -sequences=500 -steps=80
//	go test ./connect -run Model/miniredis -args -seed=1234   # replay one
var (
	modelSequences = flag.Int("sequences", 12, "random sequences per backend for the model-based tests")
	modelSteps     = flag.Int("steps", 50, "operations per sequence")
	modelSeed      = flag.Uint64("seed", 0, "run only this sequence seed (0: random seeds)")
)

// crmMode is how the model CRM answers an edit.
type crmMode int

const (
	accept  crmMode = iota
	refuse          // a definitive refusal (402): nothing applied
	timeout         // no answer: nothing applied
	lost            // applied, but the answer is lost
)

func (m crmMode) String() string { return [...]string{"accept", "refuse", "timeout", "lost"}[m] }

// crmShop is one shop's CRM as the model CRM keeps it.
type crmShop struct {
	keys     map[string]bool // API keys this CRM knows
	accepted map[string]bool // keys an accepted edit carried
	state    store.State     // the module's state in the CRM
	clientID string          // the clientId of the last accepted edit
	edits    int
	mode     crmMode
	// hold, when set, keeps edits waiting until it is closed (a slow CRM
	// whose pace the test decides).
	hold chan struct{}
	// scopes are what /api/credentials reports for the shop's keys (nil:
	// the two the module needs); down makes it answer 503.
	scopes []string
	down   bool
	checks int // /api/credentials calls
}

// modelCRM is the shops' CRMs in memory, by address; a shop that moved
// answers only at its new one.
type modelCRM struct {
	mu    sync.Mutex
	shops map[string]*crmShop
	// busy makes edits wait on the shop's lock while the CRM itself
	// switches the module and calls back (see toggle).
	locks map[*crmShop]*sync.Mutex
	// inFlight and maxInFlight count edits under way at once, all shops.
	inFlight, maxInFlight int
}

func newModelCRM() *modelCRM {
	return &modelCRM{shops: map[string]*crmShop{}, locks: map[*crmShop]*sync.Mutex{}}
}

func (c *modelCRM) shop(url string) *crmShop {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.shops[url]
}

func (c *modelCRM) add(url string) *crmShop {
	c.mu.Lock()
	defer c.mu.Unlock()
	sh := &crmShop{keys: map[string]bool{}, accepted: map[string]bool{}}
	c.shops[url] = sh
	c.locks[sh] = &sync.Mutex{}
	return sh
}

// move: the shop now answers at to, no longer at from.
func (c *modelCRM) move(from, to string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shops[to] = c.shops[from]
	delete(c.shops, from)
}

func (c *modelCRM) lock(sh *crmShop) func() {
	c.mu.Lock()
	l := c.locks[sh]
	c.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func (c *modelCRM) FetchCredentials(_ context.Context, url string, key redact.Secret) (crm.Credentials, error) {
	sh := c.shop(url)
	if sh == nil {
		return crm.Credentials{}, &crm.Error{Kind: crm.ErrNoAccount}
	}
	defer c.lock(sh)()
	sh.checks++
	if sh.down {
		return crm.Credentials{}, &crm.Error{Kind: crm.ErrUnavailable}
	}
	if !sh.keys[key.Reveal()] {
		return crm.Credentials{}, &crm.Error{Kind: crm.ErrUnauthorized}
	}
	if sh.scopes != nil {
		return crm.Credentials{Scopes: sh.scopes}, nil
	}
	return crm.Credentials{Scopes: []string{"integration_read", "integration_write"}}, nil
}

func (c *modelCRM) EditModule(ctx context.Context, url string, key redact.Secret, m crm.Module) (crm.Info, error) {
	sh := c.shop(url)
	if sh == nil {
		return crm.Info{}, &crm.Error{Kind: crm.ErrNoAccount}
	}
	c.mu.Lock()
	hold := sh.hold
	c.inFlight++
	c.maxInFlight = max(c.maxInFlight, c.inFlight)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.inFlight--
		c.mu.Unlock()
	}()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return crm.Info{}, &crm.Error{Kind: crm.ErrUnavailable}
		}
	}
	defer c.lock(sh)()
	if !sh.keys[key.Reveal()] {
		return crm.Info{}, &crm.Error{Kind: crm.ErrUnauthorized}
	}
	switch sh.mode {
	case refuse:
		return crm.Info{}, &crm.Error{Kind: crm.ErrPaymentRequired}
	case timeout:
		return crm.Info{}, &crm.Error{Kind: crm.ErrUnavailable}
	}
	sh.state = store.State{Active: m.Active, Frozen: m.Freeze}
	sh.clientID = m.ClientID.Reveal()
	sh.accepted[key.Reveal()] = true
	sh.edits++
	if sh.mode == lost {
		return crm.Info{}, &crm.Error{Kind: crm.ErrUnavailable}
	}
	return crm.Info{}, nil
}

// rotation is the documented ENCRYPTION_KEY runbook, step by step.
type rotation struct {
	keys  [][]byte // the keyring now, first is current
	spare []byte   // the next key, once added
	phase int      // 0: one key; 1: new added second; 2: new first; 3: resealed
}

// world is one model run: the Redis, the CRM, the service replicas and
// the reference model.
type world struct {
	t    *testing.T
	rng  *rand.Rand
	b    *storetest.Backend
	crm  *modelCRM
	now  time.Time
	mu   sync.Mutex // guards now in the concurrent variant
	rot  rotation
	reps []*replica
	urls []string // shop addresses, each with a crmShop
	// clientIDs is every clientId an account id ever had (must be one).
	clientIDs map[string]string
	log       []string
	moves     int // shops moved so far: each to an address of its own
}

// replica is one service process: its own store client and Service.
type replica struct {
	store *crashable
	svc   *connect.Service
}

// crashable is the store of a process that may die between the CRM's
// answer and the write recording it: the write fails and the lease stays
// taken until it expires.
type crashable struct {
	*store.Redis
	mu    sync.Mutex
	crash bool
}

func (c *crashable) Record(ctx context.Context, l store.Lease, read store.Account, sy store.Sync) (store.Account, error) {
	c.mu.Lock()
	crash := c.crash
	c.mu.Unlock()
	if crash {
		return store.Account{}, errCrash
	}
	return c.Redis.Record(ctx, l, read, sy)
}

func (c *crashable) Release(ctx context.Context, l store.Lease) error {
	c.mu.Lock()
	crash := c.crash
	c.mu.Unlock()
	if crash {
		return nil // a dead process releases nothing
	}
	return c.Redis.Release(ctx, l)
}

var errCrash = errors.New("the process died")

const leaseTTL = 30 * time.Second

func newWorld(t *testing.T, b *storetest.Backend, seed uint64, replicas int) *world {
	w := &world{
		t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), b: b, crm: newModelCRM(),
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), clientIDs: map[string]string{},
		rot: rotation{keys: [][]byte{seal.NewRandomKey()}},
	}
	for i := range 3 {
		url := fmt.Sprintf("https://shop-%d.retailcrm.ru", i)
		w.crm.add(url).keys["key-"+url+"-0"] = true
		w.urls = append(w.urls, url)
	}
	w.reps = make([]*replica, replicas)
	for i := range w.reps {
		w.restart(i)
	}
	return w
}

func (w *world) clock() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

func (w *world) advance(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.now = w.now.Add(d)
}

// restart replaces replica i by a new process on the same Redis, with the
// keyring of the rotation's current step; the start's own check must pass.
func (w *world) restart(i int) {
	s, err := store.New(w.b.Dial(), w.b.Prefix, w.rot.keys...)
	require.NoError(w.t, err)
	w.t.Cleanup(func() { _ = s.Close() })
	s.SetClock(w.clock)
	s.SetTimings(leaseTTL, time.Minute)
	require.NoError(w.t, s.CheckSealKeys(context.Background()), "a start at rotation phase %d refuses: %s", w.rot.phase, w.trail())
	st := &crashable{Redis: s}
	svc := connect.New(w.crm, st, connect.Module{Code: "demo", Name: "Demo", BaseURL: "https://module.test",
		Scopes: []string{"integration_read", "integration_write"}}, nil)
	svc.SetClock(w.clock)
	// Giving up is decided on a day's scale; the model's horizon is shorter,
	// so every attempt ends by the CRM's answer.
	svc.SetSweepOptions(connect.SweepOptions{GiveUp: 1000 * time.Hour, MaxTries: 1000, Backoff: time.Minute, MaxBackoff: 10 * time.Minute})
	w.reps[i] = &replica{store: st, svc: svc}
}

func (w *world) rep(rng *rand.Rand) *replica { return w.reps[rng.IntN(len(w.reps))] }

func (w *world) note(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.log = append(w.log, fmt.Sprintf(format, args...))
}

// trail is the last steps, for a failure message.
func (w *world) trail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	from := max(0, len(w.log)-60)
	return "\n  " + strings.Join(w.log[from:], "\n  ")
}

// allowed are the failures a caller may see: the CRM's answers, the
// refused move, an account another request just removed (a shop whose
// first connection the CRM refused). Never "busy" (connect.ErrBusy: no
// lease here outlives its holder, so no caller waits its whole bound), a
// lost lease or an internal error.
func allowed(err error) bool {
	if err == nil {
		return true
	}
	if errors.Is(err, connect.ErrBusy) {
		return false
	}
	for _, ok := range []error{crm.ErrUnauthorized, crm.ErrPaymentRequired, crm.ErrUnavailable, crm.ErrNoAccount,
		connect.ErrUnknownKey, connect.ErrMoveRefused, connect.ErrNotConnected, store.ErrNotFound} {
		if errors.Is(err, ok) {
			return true
		}
	}
	return false
}

// step runs one random operation drawn from rng, and returns what broke
// an invariant of the reply. concurrent: several run at once, so no crash
// or rotation (they are whole-process events), no moves, and the clock
// stands still (leases are judged by it).
func (w *world) step(rng *rand.Rand, concurrent bool) error {
	ctx := context.Background()
	r := w.rep(rng)
	url := w.urls[rng.IntN(len(w.urls))]
	sh := w.crm.shop(url)
	mode := crmMode(rng.IntN(4))
	if rng.IntN(2) == 0 {
		mode = accept // most calls succeed
	}
	setMode := func() {
		defer w.crm.lock(sh)()
		sh.mode = mode
	}
	var err error
	switch op := rng.IntN(100); {
	case op < 35: // a register: a new key, the same key again, or one the CRM does not know
		var key string
		switch rng.IntN(3) {
		case 0:
			key = fmt.Sprintf("key-%s-%d", url, rng.IntN(1000))
			func() { defer w.crm.lock(sh)(); sh.keys[key] = true }()
		case 1:
			key = "key-" + url + "-0"
		default:
			key = "wrong-key"
		}
		setMode()
		_, err = r.svc.Connect(ctx, url, redact.Secret(key))
		w.note("register %s key=%s crm=%s -> %v", url, key, mode, err)
	case op < 55: // the CRM switches the module (the owner, billing) and calls back
		st := store.State{Active: rng.IntN(2) == 0, Frozen: rng.IntN(4) == 0}
		newURL := ""
		if !concurrent && rng.IntN(5) == 0 {
			w.moves++
			newURL = fmt.Sprintf("https://moved-%d.simla.com", w.moves)
		}
		err = w.callback(ctx, r, sh, url, st, newURL, mode)
		w.note("callback %s %+v move=%q crm=%s -> %v", url, st, newURL, mode, err)
	case op < 65: // the owner switches the module off on the account page
		acc, ferr := r.store.FindBySystemURL(ctx, url)
		if ferr != nil {
			return nil
		}
		setMode()
		_, err = r.svc.Deactivate(ctx, acc.ID, false)
		w.note("switch-off %s crm=%s -> %v", url, mode, err)
	case op < 85: // time passes and the sweeper runs
		later := time.Duration(rng.IntN(20)) * time.Minute
		if !concurrent {
			w.advance(later)
			later = 0
		}
		setMode()
		res, serr := r.svc.Sweep(ctx, w.clock().Add(later))
		w.note("sweep crm=%s -> %+v", mode, res)
		if serr != nil {
			return fmt.Errorf("sweep: %w", serr)
		}
	case op < 92 && !concurrent: // a process dies between the CRM's answer and our write
		i := slices.Index(w.reps, r)
		r.store.mu.Lock()
		r.store.crash = true
		r.store.mu.Unlock()
		setMode()
		_, err = r.svc.Connect(ctx, url, redact.Secret("key-"+url+"-0"))
		w.note("register %s then crash crm=%s -> %v", url, mode, err)
		if errors.Is(err, errCrash) {
			err = nil
		}
		w.advance(leaseTTL + time.Second) // another process comes up later
		w.restart(i)
	case !concurrent: // one step of the key rotation runbook
		w.rotate()
	}
	if !allowed(err) {
		return fmt.Errorf("a caller got %w", err)
	}
	return nil
}

// callback is the CRM switching the module and calling back. The CRM
// holds the shop while it does (its own edits wait), as its state and the
// callback are one event.
// callback is the CRM switching the module and calling back with the
// clientId it has (a CRM that never accepted a module has nothing to call
// back). The CRM holds the shop while it does (its own edits wait), as its
// state and the callback are one event.
func (w *world) callback(ctx context.Context, r *replica, sh *crmShop, url string, st store.State, newURL string, mode crmMode) error {
	unlock := w.crm.lock(sh)
	acc, err := r.store.FindByClientID(ctx, redact.Secret(sh.clientID))
	if err != nil {
		unlock()
		return nil // the clientId the CRM has belongs to no account (any more)
	}
	if newURL != "" {
		sh.state, sh.mode = st, mode
		unlock()
		w.crm.move(url, newURL)
		w.urls[slices.Index(w.urls, url)] = newURL
		_, err := r.svc.Activity(ctx, acc, st, newURL, true)
		return err
	}
	// No move: nothing goes to the CRM, so the CRM holds the shop from its
	// own switch until the callback is answered.
	defer unlock()
	sh.state = st
	_, err = r.svc.Activity(ctx, acc, st, "", false)
	return err
}

func (w *world) rotate() {
	ctx := context.Background()
	switch w.rot.phase {
	case 0:
		w.rot.spare = seal.NewRandomKey()
		w.rot.keys = [][]byte{w.rot.keys[0], w.rot.spare}
	case 1:
		w.rot.keys = [][]byte{w.rot.spare, w.rot.keys[0]}
	case 2:
		rep, err := w.reps[0].store.Reseal(ctx)
		require.NoError(w.t, err)
		require.Zero(w.t, rep.Unreadable, w.trail())
		require.LessOrEqual(w.t, len(rep.ByKey), 1, "after a reseal only the current key seals accounts: %v", rep.ByKey)
	case 3:
		w.rot.keys = w.rot.keys[:1]
	}
	w.note("rotation phase %d -> %d", w.rot.phase, (w.rot.phase+1)%4)
	w.rot.phase = (w.rot.phase + 1) % 4
	if w.rot.phase != 3 {
		for i := range w.reps {
			w.restart(i)
		}
	}
}

// check asserts every invariant against the store as it is now.
// quiet: nothing is in flight (the CRM's state must equal the stored one
// for every account).
func (w *world) check(quiet bool) {
	t := w.t
	t.Helper()
	ctx := context.Background()
	s := w.reps[0].store.Redis
	page, err := s.List(ctx, store.ListQuery{Limit: 1000})
	require.NoError(t, err)
	seen := map[string]string{}
	counts := map[string]int64{}
	due, err := s.Due(ctx, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), 10000)
	require.NoError(t, err)
	for _, a := range page.Accounts {
		require.False(t, a.Unreadable, "account %s cannot be read: %s", a.ID, w.trail())
		// One account per shop address, reachable by every index.
		require.Empty(t, seen[a.SystemURL], "two accounts for %s: %s", a.SystemURL, w.trail())
		seen[a.SystemURL] = a.ID
		byURL, err := s.FindBySystemURL(ctx, a.SystemURL)
		require.NoError(t, err, w.trail())
		require.Equal(t, a.ID, byURL.ID, w.trail())
		byClient, err := s.FindByClientID(ctx, a.ClientID)
		require.NoError(t, err, w.trail())
		require.Equal(t, a.ID, byClient.ID, w.trail())
		// The clientId never changes.
		if prev, ok := w.clientIDs[a.ID]; ok {
			require.Equal(t, prev, a.ClientID.Reveal(), "the clientId of %s changed: %s", a.ID, w.trail())
		}
		w.clientIDs[a.ID] = a.ClientID.Reveal()
		idle := a.PendingAPIKey.IsZero() && a.InSync()
		require.Equal(t, !a.APIKey.IsZero(), a.Connected, "connected means a proven key: %s", w.trail())
		// (A shop that moved where the account did not follow has no CRM at
		// the account's address any more: the owner reconnects from there.)
		if sh := w.crm.shop(a.SystemURL); sh != nil {
			unlock := w.crm.lock(sh)
			// The stored key is one the CRM accepted.
			if !a.APIKey.IsZero() {
				require.True(t, sh.accepted[a.APIKey.Reveal()], "%s keeps a key its CRM never accepted: %s", a.ID, w.trail())
			}
			// Once nothing is in flight, the CRM has what the store says.
			if a.Connected && idle && sh.clientID == a.ClientID.Reveal() {
				require.Equal(t, sh.state, a.State(), "%s: the CRM has %+v, the store says %+v: %s", a.ID, sh.state, a.State(), w.trail())
			}
			unlock()
		}
		if quiet && w.crm.shop(a.SystemURL) != nil {
			require.True(t, idle, "%s still has work after the quiet: %s", a.ID, w.trail())
		}
		// Unfinished work is in the sweeper's queue.
		if !idle {
			require.Contains(t, due, a.ID, "%s has work but is not queued: %s", a.ID, w.trail())
		}
		for _, kid := range a.SealedWith {
			counts[kid]++
		}
		// Status indexes.
		ids, err := s.List(ctx, store.ListQuery{Status: a.Status(), Limit: 1000})
		require.NoError(t, err)
		require.True(t, slices.ContainsFunc(ids.Accounts, func(x store.Account) bool { return x.ID == a.ID }), "%s not in its status index: %s", a.ID, w.trail())
	}
	// The per-key counts the start relies on are exact.
	got, err := s.SealedCounts(ctx)
	require.NoError(t, err)
	require.Equal(t, counts, got, "sealed-per-key bookkeeping: %s", w.trail())
}

// quiesce lets the sweeper finish everything with CRMs that answer.
func (w *world) quiesce() {
	ctx := context.Background()
	for _, url := range w.urls {
		sh := w.crm.shop(url)
		func() { defer w.crm.lock(sh)(); sh.mode = accept }()
	}
	for range 50 {
		w.advance(leaseTTL + 11*time.Minute)
		due, err := w.reps[0].store.Due(ctx, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), 1000)
		require.NoError(w.t, err)
		// An account whose shop moved away has no CRM to answer: it is
		// retried until the sweeper gives up, a day later.
		due = slices.DeleteFunc(due, func(id string) bool {
			a, err := w.reps[0].store.Get(ctx, id)
			return err == nil && w.crm.shop(a.SystemURL) == nil
		})
		if len(due) == 0 {
			return
		}
		_, err = w.reps[0].svc.Sweep(ctx, w.clock())
		require.NoError(w.t, err, w.trail())
	}
	w.t.Fatalf("the sweeper never finished: %s", w.trail())
}

func seeds() []uint64 {
	if *modelSeed != 0 {
		return []uint64{*modelSeed}
	}
	out := make([]uint64, *modelSequences)
	for i := range out {
		out[i] = rand.Uint64()
	}
	return out
}

func TestModelSequential(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		for _, seed := range seeds() {
			ok := t.Run(fmt.Sprint(seed), func(t *testing.T) {
				w := newWorld(t, b, seed, 2)
				for range *modelSteps {
					require.NoError(t, w.step(w.rng, false), w.trail())
					w.check(false)
				}
				w.quiesce()
				w.check(true)
			})
			if !ok {
				t.Fatalf("replay: go test ./connect -run 'TestModelSequential/%s' -args -seed=%d", b.Name, seed)
			}
			b.DeleteKeys(t)
		}
	})
}

func TestModelConcurrent(t *testing.T) {
	storetest.Each(t, func(t *testing.T, b *storetest.Backend) {
		for _, seed := range seeds() {
			ok := t.Run(fmt.Sprint(seed), func(t *testing.T) {
				w := newWorld(t, b, seed, 2)
				const workers = 4
				var wg sync.WaitGroup
				errs := make([]error, workers)
				for i := range workers {
					// Each worker draws from its own stream, from the sequence's seed.
					rng := rand.New(rand.NewPCG(seed+uint64(i)+1, seed))
					wg.Go(func() {
						for range *modelSteps / workers * 2 {
							if errs[i] = w.step(rng, true); errs[i] != nil {
								return
							}
						}
					})
				}
				wg.Wait()
				require.NoError(t, errors.Join(errs...), w.trail())
				w.quiesce()
				w.check(true)
			})
			if !ok {
				t.Fatalf("replay: go test ./connect -run 'TestModelConcurrent/%s' -args -seed=%d", b.Name, seed)
			}
			b.DeleteKeys(t)
		}
	})
}
