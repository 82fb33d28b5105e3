// Package seal encrypts credentials before they reach the store: AES-256-GCM
// with a random nonce per value and the value's location (its Redis key and
// field) as additional data, so a ciphertext cannot be copied to another
// account. Several keys may be configured for rotation: the first seals,
// every one opens (Tink's keyset model).
package seal
