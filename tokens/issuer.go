package tokens

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Lifetimes of a token.
const (
	DefaultTTL = 10 * time.Minute
	MaxTTL     = 15 * time.Minute
)

// Claims are what a token says.
type Claims struct {
	jwt.Claims
	SystemURL string `json:"system_url"`
}

// AccountID is the subject: the shop's account id.
func (c Claims) AccountID() string { return c.Subject }

// Token is an issued token and when it stops being valid.
type Token struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
}

type signingKey struct {
	kid    string
	public ed25519.PublicKey
	signer jose.Signer
}

// Issuer signs tokens with its first key and publishes all of them.
type Issuer struct {
	keys     []signingKey
	issuer   string
	audience string
	ttl      time.Duration
	now      func() time.Time
	jwks     []byte
}

// NewIssuer builds an issuer from Ed25519 seeds (32 bytes each; the first
// signs, all are published), the issuer (PUBLIC_URL) and audience
// (MODULE_CODE). ttl 0 means DefaultTTL; more than MaxTTL is refused.
func NewIssuer(seeds [][]byte, issuer, audience string, ttl time.Duration) (*Issuer, error) {
	if len(seeds) == 0 {
		return nil, errors.New("tokens: no signing key")
	}
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < 0 || ttl > MaxTTL {
		return nil, fmt.Errorf("tokens: a token lives at most %s", MaxTTL)
	}
	iss := &Issuer{issuer: issuer, audience: audience, ttl: ttl, now: time.Now}
	set := jose.JSONWebKeySet{}
	seen := map[string]bool{}
	for i, seed := range seeds {
		if len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("tokens: key #%d is %d bytes, want a %d-byte Ed25519 seed", i+1, len(seed), ed25519.SeedSize)
		}
		priv := ed25519.NewKeyFromSeed(seed)
		pub := priv.Public().(ed25519.PublicKey)
		kid, err := KeyID(pub)
		if err != nil {
			return nil, err
		}
		if seen[kid] {
			return nil, fmt.Errorf("tokens: key #%d is listed twice", i+1)
		}
		seen[kid] = true
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: priv, KeyID: kid}},
			(&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			return nil, fmt.Errorf("tokens: key #%d: %w", i+1, err)
		}
		iss.keys = append(iss.keys, signingKey{kid: kid, public: pub, signer: signer})
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: string(jose.EdDSA), Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("tokens: jwks: %w", err)
	}
	iss.jwks = b
	return iss, nil
}

// KeyID names a public key: its RFC 7638 thumbprint, base64url.
func KeyID(pub ed25519.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("tokens: key id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// NewSeed returns a fresh random Ed25519 seed (an ephemeral development key).
func NewSeed() []byte {
	b := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(b)
	return b
}

// SetClock replaces the clock (tests).
func (i *Issuer) SetClock(now func() time.Time) { i.now = now }

// JWKS is the JSON of every public key.
func (i *Issuer) JWKS() []byte { return i.jwks }

// Issue signs a token for an account.
func (i *Issuer) Issue(accountID, systemURL string) (Token, error) {
	now := i.now().UTC().Truncate(time.Second)
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	c := Claims{
		Claims: jwt.Claims{
			Issuer: i.issuer, Audience: jwt.Audience{i.audience}, Subject: accountID,
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(i.ttl)),
			ID: base64.RawURLEncoding.EncodeToString(jti),
		},
		SystemURL: systemURL,
	}
	s, err := jwt.Signed(i.keys[0].signer).Claims(c).Serialize()
	if err != nil {
		return Token{}, fmt.Errorf("tokens: sign: %w", err)
	}
	return Token{Token: s, ExpiresAt: now.Add(i.ttl)}, nil
}
