package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// version is the first byte of every sealed value; a new layout gets a new
// version so old values stay readable.
const version byte = 1

const headerLen = 1 + 4 // version, key id

// ErrOpen means a sealed value could not be decrypted: corrupted, moved to
// another location, or sealed with a key that is no longer configured.
var ErrOpen = errors.New("seal: cannot decrypt value (unknown key or tampered)")

type key struct {
	id   uint32
	aead cipher.AEAD
}

// Keyring seals with its first key and opens with any of them.
type Keyring struct {
	keys []key
}

// NewKeyring builds a keyring from 32-byte AES-256 keys, the first one
// current.
func NewKeyring(keys ...[]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("seal: no encryption key")
	}
	k := &Keyring{}
	seen := map[uint32]bool{}
	for i, raw := range keys {
		if len(raw) != 32 {
			return nil, fmt.Errorf("seal: key #%d is %d bytes, want 32", i+1, len(raw))
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("seal: key #%d: %w", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("seal: key #%d: %w", i+1, err)
		}
		id := KeyID(raw)
		if seen[id] {
			return nil, fmt.Errorf("seal: key #%d is listed twice", i+1)
		}
		seen[id] = true
		k.keys = append(k.keys, key{id: id, aead: aead})
	}
	return k, nil
}

// IDs returns the key ids of the ring, the current one first.
func (k *Keyring) IDs() []uint32 {
	out := make([]uint32, len(k.keys))
	for i, kk := range k.keys {
		out[i] = kk.id
	}
	return out
}

// FormatKeyID writes a key id as 8 hex digits, the form logs, metrics and
// the admin API use.
func FormatKeyID(id uint32) string { return fmt.Sprintf("%08x", id) }

// NewRandomKey returns a fresh 32-byte key from crypto/rand.
func NewRandomKey() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return b
}

// KeyID names a key without revealing it: the first 4 bytes of its SHA-256.
func KeyID(raw []byte) uint32 {
	sum := sha256.Sum256(append([]byte("simpleconnect key id\x00"), raw...))
	return binary.BigEndian.Uint32(sum[:4])
}

// Seal encrypts plaintext bound to location (e.g. the Redis key and field).
// Layout: version ‖ key id ‖ nonce ‖ ciphertext+tag.
func (k *Keyring) Seal(plaintext, location []byte) []byte {
	cur := k.keys[0]
	out := make([]byte, headerLen, headerLen+cur.aead.NonceSize()+len(plaintext)+cur.aead.Overhead())
	out[0] = version
	binary.BigEndian.PutUint32(out[1:5], cur.id)
	nonce := make([]byte, cur.aead.NonceSize())
	_, _ = rand.Read(nonce)
	out = append(out, nonce...)
	return cur.aead.Seal(out, nonce, plaintext, location)
}

// Open decrypts a value made by Seal with any key of the ring and the same
// location. It reports whether the value should be re-sealed because it was
// made with a key other than the current one.
func (k *Keyring) Open(sealed, location []byte) (plaintext []byte, stale bool, err error) {
	if len(sealed) < headerLen || sealed[0] != version {
		return nil, false, ErrOpen
	}
	id := binary.BigEndian.Uint32(sealed[1:5])
	for i, kk := range k.keys {
		if kk.id != id {
			continue
		}
		ns := kk.aead.NonceSize()
		body := sealed[headerLen:]
		if len(body) < ns+kk.aead.Overhead() {
			return nil, false, ErrOpen
		}
		pt, err := kk.aead.Open(nil, body[:ns], body[ns:], location)
		if err != nil {
			return nil, false, ErrOpen
		}
		return pt, i != 0, nil
	}
	return nil, false, ErrOpen
}
