package tokens_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/tokens"
)

const (
	issuer   = "https://module.example.com"
	audience = "demo"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func newIssuer(t *testing.T, seeds ...[]byte) *tokens.Issuer {
	t.Helper()
	iss, err := tokens.NewIssuer(seeds, issuer, audience, 0)
	require.NoError(t, err)
	iss.SetClock(func() time.Time { return t0 })
	return iss
}

// The JWKS alone, read with encoding/json and crypto/ed25519 of the
// standard library, verifies a token: nothing about it is library-specific.
func TestATokenVerifiesWithTheStandardLibraryAlone(t *testing.T) {
	iss := newIssuer(t, tokens.NewSeed())
	tok, err := iss.Issue("01KBX3Q2R3M0V7Z1J6T8Y4N5P9", "https://shop.retailcrm.ru")
	require.NoError(t, err)

	var jwks struct {
		Keys []struct{ Kty, Crv, X, Kid, Alg, Use string } `json:"keys"`
	}
	require.NoError(t, json.Unmarshal(iss.JWKS(), &jwks))
	require.Len(t, jwks.Keys, 1)
	k := jwks.Keys[0]
	assert.Equal(t, []string{"OKP", "Ed25519", "EdDSA", "sig"}, []string{k.Kty, k.Crv, k.Alg, k.Use})
	pub, err := base64.RawURLEncoding.DecodeString(k.X)
	require.NoError(t, err)
	require.Len(t, pub, ed25519.PublicKeySize)

	parts := strings.Split(tok.Token, ".")
	require.Len(t, parts, 3, "compact JWS")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	require.NoError(t, err)
	assert.True(t, ed25519.Verify(pub, []byte(parts[0]+"."+parts[1]), sig), "the signature verifies")

	var header map[string]any
	raw, err := base64.RawURLEncoding.DecodeString(parts[0])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &header))
	assert.Equal(t, "EdDSA", header["alg"])
	assert.Equal(t, k.Kid, header["kid"])

	var claims map[string]any
	raw, err = base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &claims))
	assert.Equal(t, issuer, claims["iss"])
	assert.Equal(t, audience, claims["aud"])
	assert.Equal(t, "01KBX3Q2R3M0V7Z1J6T8Y4N5P9", claims["sub"])
	assert.Equal(t, "https://shop.retailcrm.ru", claims["system_url"])
	assert.EqualValues(t, t0.Unix(), claims["iat"])
	assert.EqualValues(t, t0.Unix(), claims["nbf"])
	assert.EqualValues(t, t0.Add(10*time.Minute).Unix(), claims["exp"], "10 minutes by default")
	assert.NotEmpty(t, claims["jti"])
	assert.Len(t, claims, 8, "nothing else: never a key or a clientId")
	assert.Equal(t, t0.Add(10*time.Minute), tok.ExpiresAt)

	other, err := iss.Issue("01KBX3Q2R3M0V7Z1J6T8Y4N5P9", "https://shop.retailcrm.ru")
	require.NoError(t, err)
	assert.NotEqual(t, tok.Token, other.Token, "every token its own jti")
}

func TestLifetimeIsBounded(t *testing.T) {
	_, err := tokens.NewIssuer([][]byte{tokens.NewSeed()}, issuer, audience, 16*time.Minute)
	assert.Error(t, err, "longer than 15 minutes")
	_, err = tokens.NewIssuer([][]byte{tokens.NewSeed()}, issuer, audience, 15*time.Minute)
	assert.NoError(t, err)
	_, err = tokens.NewIssuer(nil, issuer, audience, 0)
	assert.Error(t, err, "no key")
	_, err = tokens.NewIssuer([][]byte{make([]byte, 31)}, issuer, audience, 0)
	assert.Error(t, err, "not a seed")
	seed := tokens.NewSeed()
	_, err = tokens.NewIssuer([][]byte{seed, seed}, issuer, audience, 0)
	assert.Error(t, err, "a key twice")
}

// jwksServer serves whatever JWKS the test sets, with the Cache-Control
// and status it sets, counting fetches. While gated, each fetch reports on
// arrived and waits for the gate to open.
type jwksServer struct {
	mu           sync.Mutex
	body         []byte
	cacheControl string
	status       int
	fetches      int
	gate         chan struct{}
	open         func()
	arrived      chan struct{}
	*httptest.Server
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{body: body, status: http.StatusOK, arrived: make(chan struct{}, 16)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.fetches++
		body, cc, status, gate := s.body, s.cacheControl, s.status, s.gate
		s.mu.Unlock()
		if gate != nil {
			s.arrived <- struct{}{}
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		if cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

func (s *jwksServer) set(body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body = body
}

func (s *jwksServer) setCacheControl(cc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cacheControl = cc
}

func (s *jwksServer) setStatus(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
}

// hold makes fetches wait until the returned func is called (also at the
// test's end, before the server closes).
func (s *jwksServer) hold(t *testing.T) (open func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gate := make(chan struct{})
	s.gate, s.open = gate, sync.OnceFunc(func() { close(gate) })
	t.Cleanup(s.open)
	return s.open
}

func TestVerifierChecksClaimsAndFollowsKeyRotation(t *testing.T) {
	seedA, seedB := tokens.NewSeed(), tokens.NewSeed()
	onlyA := newIssuer(t, seedA)
	srv := newJWKSServer(t, onlyA.JWKS())
	now := t0
	v := &tokens.Verifier{JWKSURL: srv.URL, Issuer: issuer, Audience: audience, Now: func() time.Time { return now }}
	ctx := t.Context()

	tokA, err := onlyA.Issue("acc-1", "https://shop.retailcrm.ru")
	require.NoError(t, err)
	c, err := v.Verify(ctx, tokA.Token)
	require.NoError(t, err)
	assert.Equal(t, "acc-1", c.AccountID())
	assert.Equal(t, "https://shop.retailcrm.ru", c.SystemURL)

	// Rotation: B signs, A is still published; the verifier learns B on
	// the first token it does not know, and old tokens still verify.
	rotated := newIssuer(t, seedB, seedA)
	srv.set(rotated.JWKS())
	tokB, err := rotated.Issue("acc-2", "https://other.retailcrm.ru")
	require.NoError(t, err)
	fetches := srv.count()
	_, err = v.Verify(ctx, tokB.Token)
	assert.ErrorIs(t, err, tokens.ErrInvalid, "unknown kids refresh at most every 10s")
	assert.Equal(t, fetches, srv.count())
	now = now.Add(11 * time.Second)
	_, err = v.Verify(ctx, tokB.Token)
	require.NoError(t, err, "an unknown kid refreshes the JWKS")
	assert.Equal(t, fetches+1, srv.count())
	_, err = v.Verify(ctx, tokA.Token)
	require.NoError(t, err, "tokens of the old key verify while it is listed")
	assert.Equal(t, fetches+1, srv.count(), "cached")

	// Times, with the default 30s leeway.
	now = t0.Add(10*time.Minute + 20*time.Second)
	_, err = v.Verify(ctx, tokA.Token)
	assert.NoError(t, err, "within the leeway")
	now = t0.Add(11 * time.Minute)
	_, err = v.Verify(ctx, tokA.Token)
	assert.ErrorIs(t, err, tokens.ErrInvalid, "expired")
	now = t0.Add(-time.Minute)
	_, err = v.Verify(ctx, tokA.Token)
	assert.ErrorIs(t, err, tokens.ErrInvalid, "not yet valid")
	now = t0

	for name, w := range map[string]*tokens.Verifier{
		"another audience": {JWKSURL: srv.URL, Issuer: issuer, Audience: "other-module", Now: v.Now},
		"another issuer":   {JWKSURL: srv.URL, Issuer: "https://evil.example", Audience: audience, Now: v.Now},
	} {
		_, err := w.Verify(ctx, tokA.Token)
		assert.ErrorIs(t, err, tokens.ErrInvalid, name)
	}
	forged := newIssuer(t, tokens.NewSeed())
	tokF, err := forged.Issue("acc-1", "https://shop.retailcrm.ru")
	require.NoError(t, err)
	_, err = v.Verify(ctx, tokF.Token)
	assert.ErrorIs(t, err, tokens.ErrInvalid, "a key the JWKS does not list")
	parts := strings.Split(tokA.Token, ".")
	_, err = v.Verify(ctx, parts[0]+"."+parts[1]+"."+strings.Split(tokB.Token, ".")[2])
	assert.ErrorIs(t, err, tokens.ErrInvalid, "a signature of another token")
	_, err = v.Verify(ctx, "not-a-token")
	assert.ErrorIs(t, err, tokens.ErrInvalid)

	// Once A is dropped, a new verifier refuses its tokens (a running one
	// does once its cached set expires: TestADroppedKeyStopsVerifying…).
	onlyB := newIssuer(t, seedB)
	srv.set(onlyB.JWKS())
	fresh := &tokens.Verifier{JWKSURL: srv.URL, Issuer: issuer, Audience: audience, Now: v.Now}
	_, err = fresh.Verify(ctx, tokA.Token)
	assert.ErrorIs(t, err, tokens.ErrInvalid)
}
