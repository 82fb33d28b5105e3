package seal_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/seal"
)

var (
	plaintext = []byte("apikey-0123456789abcdef")
	location  = []byte("{p}:acct:01ARZ3NDEKTSV4RRFFQ69G5FAV#key")
)

func newRing(t *testing.T, keys ...[]byte) *seal.Keyring {
	t.Helper()
	k, err := seal.NewKeyring(keys...)
	require.NoError(t, err)
	return k
}

func TestRoundTrip(t *testing.T) {
	key := seal.NewRandomKey()
	k := newRing(t, key)
	for name, pt := range map[string][]byte{
		"api key": plaintext,
		"empty":   {},
		"binary":  {0, 1, 2, 255, 254},
		"long":    bytes.Repeat([]byte("x"), 64<<10),
	} {
		t.Run(name, func(t *testing.T) {
			sealed := k.Seal(pt, location)
			assert.False(t, len(pt) > 0 && bytes.Contains(sealed, pt), "no plaintext in the sealed value")
			require.Equal(t, byte(1), sealed[0], "version")
			assert.Equal(t, seal.KeyID(key), binary.BigEndian.Uint32(sealed[1:5]), "key id")
			assert.Len(t, sealed, 1+4+12+len(pt)+16, "version, key id, nonce, ciphertext, tag")

			got, stale, err := k.Open(sealed, location)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(pt, got), "round trip: got %q", got) // Open returns nil for no bytes
			assert.False(t, stale, "sealed with the current key")
		})
	}
}

func TestTamperedValueDoesNotOpen(t *testing.T) {
	k := newRing(t, seal.NewRandomKey())
	sealed := k.Seal(plaintext, location)
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		_, _, err := k.Open(bad, location)
		assert.ErrorIs(t, err, seal.ErrOpen, "byte %d flipped", i)
	}
	for _, n := range []int{0, 1, 5, 5 + 12, 5 + 12 + 15, len(sealed) - 1} {
		_, _, err := k.Open(sealed[:n], location)
		assert.ErrorIs(t, err, seal.ErrOpen, "cut to %d bytes", n)
	}
	_, _, err := k.Open(append(bytes.Clone(sealed), 0), location)
	assert.ErrorIs(t, err, seal.ErrOpen, "a byte appended")
	_, _, err = k.Open(sealed, location)
	require.NoError(t, err, "the original still opens")
}

func TestWrongLocationDoesNotOpen(t *testing.T) {
	k := newRing(t, seal.NewRandomKey())
	sealed := k.Seal(plaintext, location)
	for name, loc := range map[string][]byte{
		"another account": []byte("{p}:acct:01BX5ZZKBKACTAV9WEVGEMMVRZ#key"),
		"another field":   []byte("{p}:acct:01ARZ3NDEKTSV4RRFFQ69G5FAV#pkey"),
		"no location":     nil,
	} {
		_, _, err := k.Open(sealed, loc)
		assert.ErrorIs(t, err, seal.ErrOpen, name)
	}
}

func TestRotation(t *testing.T) {
	a, b, c := seal.NewRandomKey(), seal.NewRandomKey(), seal.NewRandomKey()
	old := newRing(t, a).Seal(plaintext, location)

	rotated := newRing(t, b, a)
	got, stale, err := rotated.Open(old, location)
	require.NoError(t, err, "a ring opens with any of its keys")
	assert.Equal(t, plaintext, got)
	assert.True(t, stale, "sealed with a key that is not the primary: reseal")

	resealed := rotated.Seal(plaintext, location)
	assert.Equal(t, seal.KeyID(b), binary.BigEndian.Uint32(resealed[1:5]), "the primary key seals")
	_, stale, err = rotated.Open(resealed, location)
	require.NoError(t, err)
	assert.False(t, stale)

	got, stale, err = newRing(t, b).Open(resealed, location)
	require.NoError(t, err, "once resealed, the old key can go")
	assert.Equal(t, plaintext, got)
	assert.False(t, stale)

	_, _, err = newRing(t, b).Open(old, location)
	assert.ErrorIs(t, err, seal.ErrOpen, "a retired key's values do not open")
	_, _, err = newRing(t, c).Open(resealed, location)
	assert.ErrorIs(t, err, seal.ErrOpen, "an unrelated key")

	// A value that claims b's key id but was sealed with another key.
	forged := newRing(t, c).Seal(plaintext, location)
	binary.BigEndian.PutUint32(forged[1:5], seal.KeyID(b))
	_, _, err = rotated.Open(forged, location)
	assert.ErrorIs(t, err, seal.ErrOpen, "a key id does not stand in for the key")
}

func TestNewKeyring(t *testing.T) {
	a := seal.NewRandomKey()
	cases := []struct {
		name string
		keys [][]byte
	}{
		{"no key", nil},
		{"duplicate key", [][]byte{a, seal.NewRandomKey(), bytes.Clone(a)}},
		{"empty key", [][]byte{{}}},
		{"AES-128 length", [][]byte{make([]byte, 16)}},
		{"31 bytes", [][]byte{make([]byte, 31)}},
		{"33 bytes", [][]byte{make([]byte, 33)}},
		{"second key wrong length", [][]byte{a, make([]byte, 24)}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			k, err := seal.NewKeyring(tt.keys...)
			assert.Error(t, err)
			assert.Nil(t, k)
		})
	}

}

func TestNonceIsFreshEachSeal(t *testing.T) {
	k := newRing(t, seal.NewRandomKey())
	s1 := k.Seal(plaintext, location)
	s2 := k.Seal(plaintext, location)
	assert.NotEqual(t, s1[5:5+12], s2[5:5+12], "nonce")
	assert.NotEqual(t, s1, s2, "the same plaintext seals differently each time")
}

func TestKeyID(t *testing.T) {
	a, b := seal.NewRandomKey(), seal.NewRandomKey()
	assert.Equal(t, seal.KeyID(a), seal.KeyID(bytes.Clone(a)), "stable")
	assert.NotEqual(t, seal.KeyID(a), seal.KeyID(b))
	assert.NotEqual(t, binary.BigEndian.Uint32(a[:4]), seal.KeyID(a), "not the key's own bytes")
	assert.Len(t, a, 32)
	assert.NotEqual(t, a, b, "random keys")
}
