package connect_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
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
// random operation sequences (math/rand/v2, one seed per sequence; a
// failure prints the seed to replay, nothing is shrunk) and check, after
// every step, what must hold whatever the order: one account per shop
// address, a clientId that never changes, a stored key the CRM accepted,
// the CRM's state equal to the stored one once nothing is in flight, no
// reply "busy", every account readable at every step of the documented key
// rotation, and the store's own bookkeeping (indexes, the sweeper's queue,
// the per-key counts).
//
// They also keep a reference model (refModel) the store is compared with:
// each account's intention (what the last owner or CRM action that took
// effect asked for) and the newest connection attempt whose key the CRM
// accepted. The stored intention, the stored state once in sync, the
// stored key and, after the sweeper is done, the CRM's own state must be
// the model's.
//
// A seed replays a sequence's operations exactly; in the concurrent
// variant the scheduler still decides how its workers interleave.
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

// refModel is the reference the store is compared with, worked out from
// what owners, CRMs and the service's calls asked for, never from the
// store's own bookkeeping (its versions, its attempt checks).
type refModel struct {
	mu sync.Mutex
	// want is each account's intention, by id: what the last owner or CRM
	// action that took effect asked for. Absent: not known (the workers of
	// the concurrent variant interleave actions in an order the model does
	// not see; its coda sets it again).
	want map[string]store.State
	// attempts are the key of every connection attempt, by account id and
	// attempt number, as BeginConnect began them.
	attempts map[string]map[int64]string
	// newest is, by account id, the newest attempt the CRM accepted (and
	// the service recorded): a newer attempt always wins, so the stored key
	// is this attempt's, whatever order the acceptances were recorded in.
	newest map[string]int64
	// keys are, for every Record that succeeded, the attempt whose key it
	// says the CRM accepted, and the one whose key it left stored: check
	// matches each with the key the attempt was begun with, once every
	// BeginConnect has returned (the sweeper may record an attempt before
	// the register that began it hears its number).
	keys []keyOf
	// broken is what the service's store calls did wrong, seen as they
	// happened (in any goroutine); check reports it.
	broken []string
}

// keyOf says that account id's attempt seq had key, as what.
type keyOf struct {
	id, key, what string
	seq           int64
}

func newRefModel() *refModel {
	return &refModel{want: map[string]store.State{}, attempts: map[string]map[int64]string{}, newest: map[string]int64{}}
}

func (m *refModel) began(id string, seq int64, key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.attempts[id] == nil {
		m.attempts[id] = map[int64]string{}
	}
	m.attempts[id][seq] = key
}

// floor is the newest accepted attempt recorded so far: a Record that
// starts now must leave a key at least that new.
func (m *refModel) floor(id string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.newest[id]
}

// recorded takes in a Record that succeeded, which started when floor was
// the newest accepted attempt: sy proved attempt sy.ProvedSeq's key (if
// any), acc is the account the write left. Records of one account are
// serialised by its lease, so one that completed before this one started
// came first: the key this one leaves is never older than floor.
func (m *refModel) recorded(id string, floor int64, sy store.Sync, acc store.Account) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !sy.Proved.IsZero() {
		m.keys = append(m.keys, keyOf{id: id, key: sy.Proved.Reveal(), seq: sy.ProvedSeq, what: "recorded as proved by"})
		m.newest[id] = max(m.newest[id], sy.ProvedSeq)
		floor = max(floor, sy.ProvedSeq)
	}
	if acc.Connected {
		m.keys = append(m.keys, keyOf{id: id, key: acc.APIKey.Reveal(), seq: acc.KeySeq, what: "left by a record as the key of"})
	}
	if acc.KeySeq < floor {
		m.broken = append(m.broken, fmt.Sprintf("%s: after recording (proved attempt %d) the key is attempt %d's, older than attempt %d the CRM accepted",
			id, sy.ProvedSeq, acc.KeySeq, floor))
	}
}

// matchKeys checks every key seen recorded against the attempt it was
// said to be; all BeginConnect calls have returned.
func (m *refModel) matchKeys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range m.keys {
		if key, ok := m.attempts[k.id][k.seq]; !ok || key != k.key {
			m.broken = append(m.broken, fmt.Sprintf("%s: a key %s attempt %d, which was begun with another key", k.id, k.what, k.seq))
		}
	}
	m.keys = nil
	return slices.Clone(m.broken)
}

func (m *refModel) connected(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.newest[id] > 0
}

func (m *refModel) intend(id string, st store.State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.want[id] = st
}

func (m *refModel) intention(id string) (store.State, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.want[id]
	return st, ok
}

func (m *refModel) forget(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.want, id)
}

// world is one model run: the Redis, the CRM, the service replicas and
// the reference model.
type world struct {
	t     *testing.T
	rng   *rand.Rand
	b     *storetest.Backend
	crm   *modelCRM
	model *refModel
	now   time.Time
	mu    sync.Mutex // guards now in the concurrent variant
	rot   rotation
	reps  []*replica
	urls  []string // shop addresses, each with a crmShop
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
// taken until it expires. It also tells the model every attempt begun and
// every exchange recorded.
type crashable struct {
	*store.Redis
	model *refModel
	mu    sync.Mutex
	crash bool
}

func (c *crashable) BeginConnect(ctx context.Context, systemURL string, apiKey redact.Secret) (store.Attempt, error) {
	at, err := c.Redis.BeginConnect(ctx, systemURL, apiKey)
	if err == nil {
		c.model.began(at.Account.ID, at.Seq, apiKey.Reveal())
	}
	return at, err
}

func (c *crashable) Record(ctx context.Context, l store.Lease, read store.Account, sy store.Sync) (store.Account, error) {
	c.mu.Lock()
	crash := c.crash
	c.mu.Unlock()
	if crash {
		return store.Account{}, errCrash
	}
	floor := c.model.floor(l.AccountID)
	acc, err := c.Redis.Record(ctx, l, read, sy)
	if err == nil {
		c.model.recorded(l.AccountID, floor, sy, acc)
	}
	return acc, err
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
		t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), b: b, crm: newModelCRM(), model: newRefModel(),
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
	st := &crashable{Redis: s, model: w.model}
	svc := connect.New(w.crm, st, connect.Module{Code: "demo", Name: "Demo", BaseURL: "https://module.test",
		Scopes: []string{"integration_read", "integration_write"}}, nil)
	svc.SetClock(w.clock)
	// Giving up is decided on a day's scale; the model's horizon is shorter,
	// so every attempt ends by the CRM's answer.
	svc.SetSweepOptions(connect.SweepOptions{GiveUp: 1000 * time.Hour, MaxTries: 1000, Backoff: time.Minute, MaxBackoff: 10 * time.Minute})
	w.reps[i] = &replica{store: st, svc: svc}
}

func (w *world) rep(rng *rand.Rand) *replica { return w.reps[rng.IntN(len(w.reps))] }

// lookup is the account at a shop address, as the store has it now.
func (w *world) lookup(ctx context.Context, url string) (store.Account, bool) {
	a, err := w.reps[0].store.FindBySystemURL(ctx, url)
	return a, err == nil
}

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

// answer is what a caller hears from an edit the CRM answered in mode m.
func answer(m crmMode) error {
	switch m {
	case refuse:
		return crm.ErrPaymentRequired
	case timeout, lost:
		return crm.ErrUnavailable
	}
	return nil
}

// expect fails unless err is (or wraps) want; nil wants nil.
func expect(what string, err, want error) error {
	if (want == nil && err != nil) || (want != nil && !errors.Is(err, want)) {
		return fmt.Errorf("%s: got %v, the model expects %v", what, err, want)
	}
	return nil
}

// step runs one random operation drawn from rng, and returns what broke
// an invariant of the reply or the model. concurrent: several run at once,
// so no crash or rotation (they are whole-process events), no moves, the
// clock stands still (leases are judged by it) and the model does not
// follow intentions (it cannot see the order the store took them in).
func (w *world) step(rng *rand.Rand, concurrent bool) error {
	ctx := context.Background()
	r := w.rep(rng)
	url := w.urls[rng.IntN(len(w.urls))]
	mode := crmMode(rng.IntN(4))
	if rng.IntN(2) == 0 {
		mode = accept // most calls succeed
	}
	var err error
	switch op := rng.IntN(100); {
	case op < 35: // a register: a new key, the same key again, or one the CRM does not know
		var key string
		switch rng.IntN(3) {
		case 0:
			key = fmt.Sprintf("key-%s-%d", url, rng.IntN(1000))
		case 1:
			key = "key-" + url + "-0"
		default:
			key = "wrong-key"
		}
		err = w.register(ctx, r, url, key, mode, !concurrent, false)
	case op < 55: // the CRM switches the module (the owner, billing) and calls back
		st := store.State{Active: rng.IntN(2) == 0, Frozen: rng.IntN(4) == 0}
		newURL := ""
		if !concurrent && rng.IntN(5) == 0 {
			w.moves++
			newURL = fmt.Sprintf("https://moved-%d.simla.com", w.moves)
		}
		err = w.callback(ctx, r, url, st, newURL, mode, !concurrent)
	case op < 65: // the owner switches the module off on the account page
		err = w.switchOff(ctx, r, url, mode, !concurrent)
	case op < 85: // time passes and the sweeper runs
		later := time.Duration(rng.IntN(20)) * time.Minute
		if !concurrent {
			w.advance(later)
			later = 0
		}
		w.setMode(url, mode)
		res, serr := r.svc.Sweep(ctx, w.clock().Add(later))
		w.note("sweep crm=%s -> %+v", mode, res)
		if serr != nil {
			return fmt.Errorf("sweep: %w", serr)
		}
		if !concurrent {
			return w.swept(ctx)
		}
	case op < 92 && !concurrent: // a process dies between the CRM's answer and our write
		i := slices.Index(w.reps, r)
		r.store.mu.Lock()
		r.store.crash = true
		r.store.mu.Unlock()
		err = w.register(ctx, r, url, "key-"+url+"-0", mode, true, true)
		w.advance(leaseTTL + time.Second) // another process comes up later
		w.restart(i)
	case !concurrent: // one step of the key rotation runbook
		w.rotate()
	default: // the owner clicks Connect three times, the clicks land on both replicas
		return w.clicks(ctx, rng, url, mode)
	}
	return err
}

// clicks are three registers for one shop at once, two on one replica, one
// on the other: while the first holds the account, the second waits for
// its lease and the third for the first's replica, so the newer attempt
// often gets the account before the older (which must not win).
func (w *world) clicks(ctx context.Context, rng *rand.Rand, url string, mode crmMode) error {
	keys := make([]string, 3)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%s-%d", url, rng.IntN(1000))
	}
	sh := w.crm.shop(url)
	func() {
		defer w.crm.lock(sh)()
		for _, k := range keys {
			sh.keys[k] = true
		}
		sh.mode = mode
	}()
	first := rng.IntN(len(w.reps))
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i, key := range keys {
		r := w.reps[(first+i/2)%len(w.reps)]
		wg.Go(func() { _, errs[i] = r.svc.Connect(ctx, url, redact.Secret(key)) })
	}
	wg.Wait()
	w.note("3 clicks %s crm=%s -> %v", url, mode, errs)
	for _, err := range errs {
		if !allowed(err) {
			return fmt.Errorf("a caller got %w", err)
		}
	}
	return nil
}

func (w *world) setMode(url string, m crmMode) {
	sh := w.crm.shop(url)
	defer w.crm.lock(sh)()
	sh.mode = m
}

// register is a register at url with key while the CRM answers in mode;
// crashed: the process dies before it can record the CRM's answer.
// ordered: the model sees it in order. A key the CRM does not know
// changes nothing. Otherwise the attempt makes "switched on" the
// intention, unless the CRM refused its edit: then the intention is what
// it was before, and an account the CRM never accepted is gone.
func (w *world) register(ctx context.Context, r *replica, url, key string, mode crmMode, ordered, crashed bool) error {
	sh := w.crm.shop(url)
	known := func() bool {
		defer w.crm.lock(sh)()
		if strings.HasPrefix(key, "key-") {
			sh.keys[key] = true
		}
		sh.mode = mode
		return sh.keys[key]
	}()
	before, existed := w.lookup(ctx, url)
	_, err := r.svc.Connect(ctx, url, redact.Secret(key))
	w.note("register %s key=%s crm=%s crash=%v -> %v", url, key, mode, crashed, err)
	if !allowed(err) && !(crashed && errors.Is(err, errCrash)) {
		return fmt.Errorf("a caller got %w", err)
	}
	if !ordered {
		return nil
	}
	if !known {
		return expect("a register with a key the CRM does not know", err, connect.ErrUnknownKey)
	}
	want := answer(mode)
	if crashed && mode == accept {
		want = errCrash
	}
	if err := expect("a register", err, want); err != nil {
		return err
	}
	after, exists := w.lookup(ctx, url)
	switch {
	case mode == refuse && existed && w.model.connected(before.ID):
		if !exists || after.ID != before.ID {
			return fmt.Errorf("a refused register of a connected shop lost its account %s", before.ID)
		}
	case mode == refuse:
		if exists {
			return fmt.Errorf("%s outlived a refused first register: the CRM never accepted it", after.ID)
		}
		if existed {
			w.model.forget(before.ID)
		}
	default:
		if !exists || (existed && after.ID != before.ID) {
			return fmt.Errorf("a register left %s without its account (before: %v)", url, existed)
		}
		prev, _ := w.model.intention(after.ID)
		w.model.intend(after.ID, store.State{Active: true, Frozen: prev.Frozen})
	}
	return nil
}

// callback is the CRM switching the module to st and calling back with
// the clientId it has (a CRM that never accepted a module has nothing to
// call back), from newURL when the shop moved there. The CRM holds the
// shop while it does (its own edits wait), as its state and the callback
// are one event. The CRM's state is the account's intention, whatever
// comes of a move. ordered: the model sees it in order.
func (w *world) callback(ctx context.Context, r *replica, url string, st store.State, newURL string, mode crmMode, ordered bool) error {
	sh := w.crm.shop(url)
	unlock := w.crm.lock(sh)
	acc, err := r.store.FindByClientID(ctx, redact.Secret(sh.clientID))
	if err != nil {
		unlock()
		w.note("callback %s: the CRM's clientId belongs to no account", url)
		return nil // the clientId the CRM has belongs to no account (any more)
	}
	if newURL != "" {
		sh.state, sh.mode = st, mode
		unlock()
		w.crm.move(url, newURL)
		w.urls[slices.Index(w.urls, url)] = newURL
		_, err = r.svc.Activity(ctx, acc, st, newURL, true)
	} else {
		// No move: nothing goes to the CRM, so the CRM holds the shop from
		// its own switch until the callback is answered.
		sh.state = st
		_, err = r.svc.Activity(ctx, acc, st, "", false)
		unlock()
	}
	w.note("callback %s %+v move=%q crm=%s -> %s %v", url, st, newURL, mode, acc.ID, err)
	if !allowed(err) {
		return fmt.Errorf("a caller got %w", err)
	}
	if ordered {
		if newURL == "" {
			if err := expect("a callback", err, nil); err != nil {
				return err
			}
		}
		w.model.intend(acc.ID, st)
	}
	return nil
}

// switchOff is the owner switching the module off on the account page
// while the CRM answers in mode: "off" is the intention, unless the CRM
// refused it (nothing changed) or the account has no key to send it with.
// ordered: the model sees it in order.
func (w *world) switchOff(ctx context.Context, r *replica, url string, mode crmMode, ordered bool) error {
	acc, ferr := r.store.FindBySystemURL(ctx, url)
	if ferr != nil {
		return nil
	}
	w.setMode(url, mode)
	_, err := r.svc.Deactivate(ctx, acc.ID, false)
	w.note("switch-off %s crm=%s -> %v", url, mode, err)
	if !allowed(err) {
		return fmt.Errorf("a caller got %w", err)
	}
	if !ordered {
		return nil
	}
	if !w.model.connected(acc.ID) {
		return expect("a switch-off before any key was accepted", err, connect.ErrNotConnected)
	}
	if err := expect("a switch-off", err, answer(mode)); err != nil {
		return err
	}
	if prev, ok := w.model.intention(acc.ID); ok && mode != refuse {
		w.model.intend(acc.ID, store.State{Active: false, Frozen: prev.Frozen})
	}
	return nil
}

// swept checks what a sweep may have removed: only an account the CRM
// never accepted (its first attempt refused). A sweep changes no
// intention: it brings the CRM to the ones it finds.
func (w *world) swept(ctx context.Context) error {
	w.model.mu.Lock()
	ids := slices.Collect(maps.Keys(w.model.want))
	w.model.mu.Unlock()
	for _, id := range ids {
		if _, err := w.reps[0].store.Get(ctx, id); !errors.Is(err, store.ErrNotFound) {
			continue
		}
		if w.model.connected(id) {
			return fmt.Errorf("the sweeper removed %s, an account the CRM accepted", id)
		}
		w.model.forget(id)
	}
	return nil
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

// check asserts every invariant against the store as it is now, and the
// store against the model. quiet: nothing is in flight (the sweeper is
// done: the CRM must have every account's intention).
func (w *world) check(quiet bool) {
	t := w.t
	t.Helper()
	ctx := context.Background()
	m := w.model
	require.Empty(t, m.matchKeys(), "the service's store calls: %s", w.trail())
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

		// The model: the intention is the last owner's or CRM's action's,
		// and once in sync it is what the CRM has.
		want, known := m.intention(a.ID)
		if known {
			require.Equal(t, want, a.Want, "%s: the stored intention is %+v, the last action asked for %+v: %s", a.ID, a.Want, want, w.trail())
			if idle {
				require.Equal(t, want, a.State(), "%s is in sync with %+v, the last action asked for %+v: %s", a.ID, a.State(), want, w.trail())
			}
		}
		// The model: the key is the newest accepted attempt's.
		m.mu.Lock()
		newest, key := m.newest[a.ID], m.attempts[a.ID][m.newest[a.ID]]
		m.mu.Unlock()
		if newest > 0 {
			require.Equal(t, newest, a.KeySeq, "%s keeps the key of attempt %d; %d is the newest the CRM accepted: %s", a.ID, a.KeySeq, newest, w.trail())
			require.True(t, a.APIKey.Equal(redact.Secret(key)), "%s keeps a key other than attempt %d's: %s", a.ID, newest, w.trail())
		} else {
			require.False(t, a.Connected, "%s is connected, yet the CRM accepted none of its attempts: %s", a.ID, w.trail())
		}

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
				// ... and, after the sweeper, what the last action asked for.
				if quiet && known {
					require.Equal(t, want, sh.state, "%s: after the sweeper the CRM has %+v, the last action asked for %+v: %s", a.ID, sh.state, want, w.trail())
				}
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
	// Every account the model follows is there.
	m.mu.Lock()
	followed := slices.Collect(maps.Keys(m.want))
	m.mu.Unlock()
	for _, id := range followed {
		require.Contains(t, slices.Collect(maps.Values(seen)), id, "%s is gone: %s", id, w.trail())
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
		w.setMode(url, accept)
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
		res, err := w.reps[0].svc.Sweep(ctx, w.clock())
		w.note("quiesce: sweep -> %+v", res)
		require.NoError(w.t, err, w.trail())
		// It may remove what any sweep may: an account the CRM never
		// accepted (say its shop moved away before the first edit).
		require.NoError(w.t, w.swept(ctx), w.trail())
	}
	w.t.Fatalf("the sweeper never finished: %s", w.trail())
}

// coda ends the concurrent variant with one action per shop that the
// model sees in order: the CRM switches the module and calls back (its
// state is the intention), then half the time the owner switches it off
// while the CRM answers in any mode. What the workers left unfinished
// (pending attempts, unsure edits) is then the sweeper's, which must bring
// each CRM to this intention, never to one of its own.
func (w *world) coda(rng *rand.Rand) error {
	ctx := context.Background()
	for _, url := range w.urls {
		st := store.State{Active: rng.IntN(2) == 0, Frozen: rng.IntN(4) == 0}
		if err := w.callback(ctx, w.rep(rng), url, st, "", accept, true); err != nil {
			return err
		}
		if rng.IntN(2) == 0 {
			if err := w.switchOff(ctx, w.rep(rng), url, crmMode(rng.IntN(4)), true); err != nil {
				return err
			}
		}
	}
	return nil
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
				w.check(false)
				require.NoError(t, w.coda(w.rng), w.trail())
				w.check(false)
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
