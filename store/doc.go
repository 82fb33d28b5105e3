// Package store keeps the shops' accounts, their sessions and the event
// stream in Redis (go-redis v9): a single node, a Cluster or Sentinel, or an
// embedded in-process Redis (miniredis) for development.
//
// All key names are built in keys.go. Every key carries the same Cluster
// hash tag, so each change to an account (the account hash, its indexes,
// the sweeper's queue, the per-key-id sets and its event) is one Lua script
// in one slot (scripts.go): an account is never half written, and writers
// never retry or refuse each other.
//
// An account keeps what the shop's CRM has apart from what it should have
// (Account.Want), numbers its connection attempts, and is changed after a
// talk with the CRM only under its lease (Lease), so the CRM and the store
// agree on the order of edits.
//
// Credentials are sealed (AES-256-GCM, package seal) before they reach
// Redis and opened when read; the clientId is kept only as a SHA-256 in key
// names and sealed inside the account, so Redis holds neither an API key nor
// a clientId in clear. Each account is in a set per encryption key id that
// sealed it (sealing.go), so a start can tell whether a key may go.
package store
