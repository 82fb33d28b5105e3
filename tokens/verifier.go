package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// ErrInvalid means a token did not verify: malformed, signed by a key the
// JWKS does not list, or with wrong claims (issuer, audience, time).
var ErrInvalid = errors.New("tokens: invalid token")

// ErrUnavailable means a token could not be checked: the JWKS could not be
// fetched and no cached set may answer for it (none yet, one too old, or
// one that does not know the token's key). Try again later; it says
// nothing about the token.
var ErrUnavailable = errors.New("tokens: the JWKS is unavailable")

// How long a fetched JWKS is trusted. The service's reply says (its
// Cache-Control max-age, less any Age an HTTP cache on the way added);
// without one, DefaultJWKSMaxAge. It is held to [minRefresh, MaxJWKSMaxAge]:
// a key dropped from TOKEN_SIGNING_KEY stops verifying at most
// MaxJWKSMaxAge after it left the JWKS, whatever a proxy on the way says.
const (
	DefaultJWKSMaxAge = 5 * time.Minute
	MaxJWKSMaxAge     = 15 * time.Minute
)

// While the JWKS cannot be fetched, the set last fetched keeps verifying
// for MaxJWKSStale past its expiry (an outage of the service or the
// network between must not refuse every token at once), then everything
// is refused with ErrUnavailable: a key dropped meanwhile is trusted at
// most this much longer. Failed fetches are retried after minRefresh,
// doubling up to maxBackoff, never more often.
const (
	MaxJWKSStale = 30 * time.Minute
	maxBackoff   = 5 * time.Minute
)

// minRefresh bounds how often the verifier fetches the JWKS: an unknown
// kid (forged kids cannot make it hammer the service; a new signing key is
// published before it signs: see TOKEN_SIGNING_KEY in the README), a
// max-age of 0, and the first retry after a failure.
const minRefresh = 10 * time.Second

// fetchTimeout bounds one fetch when Client has no timeout of its own.
const fetchTimeout = 10 * time.Second

// Verifier checks tokens against the service's JWKS, for the module's own
// backends. The zero value is not usable: set JWKSURL, Issuer, Audience.
// One Verifier serves any number of goroutines; keep one per process.
//
// The JWKS is fetched on first use and again when it expires (see
// DefaultJWKSMaxAge) or when a token names a key it does not list (at most
// every 10 s). A verification that finds the set expired waits for the
// refresh; one whose set is fresh and knows the token's key never waits
// for a fetch. Concurrent verifications needing a fetch share one, made
// outside the lock.
type Verifier struct {
	// JWKSURL is the service's /.well-known/jwks.json.
	JWKSURL string
	// Issuer is the service's PUBLIC_URL; Audience is MODULE_CODE.
	Issuer, Audience string
	// Client fetches the JWKS; nil: a client with a 10s timeout.
	Client *http.Client
	// Leeway is the clock skew allowed on exp, nbf and iat (default 30s).
	Leeway time.Duration
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time

	mu        sync.Mutex
	keys      jose.JSONWebKeySet
	have      bool      // keys came from a fetch
	fetchedAt time.Time // of keys
	expires   time.Time // keys are fresh until then
	failures  int       // fetches failed in a row
	retryAt   time.Time // no fetch before then (backing off)
	lastErr   error     // of the last fetch; nil when it succeeded
	flight    *flight   // the fetch under way, if any

	onWait func() // tests: a verification starts waiting for a fetch
}

// flight is one fetch that every verification needing it waits for.
type flight struct{ done chan struct{} }

// Verify checks a token's signature and claims and returns them. A token
// that does not verify is ErrInvalid; one that cannot be checked for now
// is ErrUnavailable (or the context's error).
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil || len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		return Claims{}, fmt.Errorf("%w: not a signed token with a kid", ErrInvalid)
	}
	key, err := v.key(ctx, tok.Headers[0].KeyID)
	if err != nil {
		return Claims{}, err
	}
	var c Claims
	if err := tok.Claims(key.Key, &c); err != nil {
		return Claims{}, fmt.Errorf("%w: signature", ErrInvalid)
	}
	leeway := v.Leeway
	if leeway == 0 {
		leeway = 30 * time.Second
	}
	if c.Expiry == nil || c.NotBefore == nil || c.Subject == "" {
		return Claims{}, fmt.Errorf("%w: exp, nbf and sub are required", ErrInvalid)
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: v.Issuer, AnyAudience: jwt.Audience{v.Audience}, Time: v.now()}, leeway); err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return c, nil
}

// key finds a key by id: from the cached set while it is fresh, else
// after a refresh (shared with every verification waiting for one).
func (v *Verifier) key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	v.mu.Lock()
	now := v.now()
	if v.have && now.Before(v.expires) {
		if k, ok := v.lookup(kid); ok {
			v.mu.Unlock()
			return k, nil
		}
		if now.Sub(v.fetchedAt) < minRefresh {
			v.mu.Unlock()
			return jose.JSONWebKey{}, fmt.Errorf("%w: unknown key id", ErrInvalid)
		}
	}
	// No set yet, an expired one, or a kid it does not list: fetch, unless
	// a failure is being backed off from.
	f := v.flight
	if f == nil && now.Before(v.retryAt) {
		defer v.mu.Unlock()
		return v.settle(now, kid)
	}
	if f == nil {
		f = &flight{done: make(chan struct{})}
		v.flight = f
		// The fetch is everyone's: the first caller leaving must not end it.
		go v.fetch(context.WithoutCancel(ctx), f)
	}
	v.mu.Unlock()
	if v.onWait != nil {
		v.onWait()
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		return jose.JSONWebKey{}, fmt.Errorf("tokens: waiting for the JWKS: %w", ctx.Err())
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.settle(v.now(), kid)
}

// settle answers from the cached set once no fetch may run or one just
// ended: the set if it is not past MaxJWKSStale (a failed refresh leaves
// the old one), else ErrUnavailable. Callers hold mu.
func (v *Verifier) settle(now time.Time, kid string) (jose.JSONWebKey, error) {
	if !v.have || !now.Before(v.expires.Add(MaxJWKSStale)) {
		if v.lastErr == nil { // a fetch that ended before this waiter looked again
			return jose.JSONWebKey{}, ErrUnavailable
		}
		return jose.JSONWebKey{}, fmt.Errorf("%w: %w", ErrUnavailable, v.lastErr)
	}
	if k, ok := v.lookup(kid); ok {
		return k, nil
	}
	if v.lastErr != nil { // it may be a key published since: say we cannot tell
		return jose.JSONWebKey{}, fmt.Errorf("%w: unknown key id: %w", ErrUnavailable, v.lastErr)
	}
	return jose.JSONWebKey{}, fmt.Errorf("%w: unknown key id", ErrInvalid)
}

func (v *Verifier) lookup(kid string) (jose.JSONWebKey, bool) {
	if k := v.keys.Key(kid); len(k) == 1 {
		return k[0], true
	}
	return jose.JSONWebKey{}, false
}

// fetch gets the JWKS without holding mu, records what came of it, and
// ends the flight.
func (v *Verifier) fetch(ctx context.Context, f *flight) {
	set, maxAge, err := v.get(ctx)
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	if err != nil {
		v.failures++
		v.lastErr = err
		v.retryAt = now.Add(min(minRefresh<<min(v.failures-1, 16), maxBackoff))
	} else {
		v.keys, v.have, v.fetchedAt, v.expires = set, true, now, now.Add(maxAge)
		v.failures, v.lastErr, v.retryAt = 0, nil, time.Time{}
	}
	v.flight = nil
	close(f.done)
}

func (v *Verifier) get(ctx context.Context) (jose.JSONWebKeySet, time.Duration, error) {
	var set jose.JSONWebKeySet
	client := v.Client
	if client == nil {
		client = &http.Client{Timeout: fetchTimeout}
	}
	if client.Timeout == 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, fetchTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.JWKSURL, nil)
	if err != nil {
		return set, 0, fmt.Errorf("tokens: jwks: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return set, 0, fmt.Errorf("tokens: jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return set, 0, fmt.Errorf("tokens: jwks: %s", resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return set, 0, fmt.Errorf("tokens: jwks: %w", err)
	}
	return set, maxAge(resp.Header), nil
}

// maxAge is how long a JWKS reply may be used: its Cache-Control max-age
// less its Age, DefaultJWKSMaxAge without one, held to [minRefresh,
// MaxJWKSMaxAge]. no-store and no-cache mean as little as allowed.
func maxAge(h http.Header) time.Duration {
	d := DefaultJWKSMaxAge
	for _, dir := range strings.Split(strings.Join(h.Values("Cache-Control"), ","), ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(dir), "=")
		switch strings.ToLower(name) {
		case "no-store", "no-cache":
			return minRefresh
		case "max-age":
			if s, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64); err == nil && s >= 0 {
				d = time.Duration(min(s, int64(MaxJWKSMaxAge/time.Second))) * time.Second
			}
		}
	}
	if age, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && age > 0 {
		d -= time.Duration(min(age, int64(MaxJWKSMaxAge/time.Second))) * time.Second
	}
	return min(max(d, minRefresh), MaxJWKSMaxAge)
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}
