package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// ErrInvalid means a token did not verify: malformed, signed by a key the
// JWKS does not list, or with wrong claims (issuer, audience, time).
var ErrInvalid = errors.New("tokens: invalid token")

// Verifier checks tokens against the service's JWKS, for the module's own
// backends. The zero value is not usable: set JWKSURL, Issuer, Audience.
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
	fetchedAt time.Time
}

// minRefresh bounds how often an unknown kid makes the verifier fetch the
// JWKS again: forged kids cannot make it hammer the service. (A new signing
// key is published before it signs: see TOKEN_SIGNING_KEY in the README.)
const minRefresh = 10 * time.Second

// Verify checks a token's signature and claims and returns them.
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

// key finds a key by id, fetching the JWKS when it is not cached (a new
// key after a rotation), at most once per minRefresh.
func (v *Verifier) key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if k := v.keys.Key(kid); len(k) == 1 {
		return k[0], nil
	}
	if !v.fetchedAt.IsZero() && v.now().Sub(v.fetchedAt) < minRefresh {
		return jose.JSONWebKey{}, fmt.Errorf("%w: unknown key id", ErrInvalid)
	}
	if err := v.fetch(ctx); err != nil {
		return jose.JSONWebKey{}, err
	}
	if k := v.keys.Key(kid); len(k) == 1 {
		return k[0], nil
	}
	return jose.JSONWebKey{}, fmt.Errorf("%w: unknown key id", ErrInvalid)
}

func (v *Verifier) fetch(ctx context.Context) error {
	client := v.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.JWKSURL, nil)
	if err != nil {
		return fmt.Errorf("tokens: jwks: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("tokens: jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("tokens: jwks: %s", resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return fmt.Errorf("tokens: jwks: %w", err)
	}
	v.keys, v.fetchedAt = set, v.now()
	return nil
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}
