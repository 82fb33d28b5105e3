// Package store keeps the shops' accounts, their sessions and the event
// stream in Redis (go-redis v9): a single node, a Cluster or Sentinel, or an
// embedded in-process Redis (miniredis) for development.
//
// All key names are built in keys.go. Every key carries the same Cluster
// hash tag, so each change to an account (the account hash, its indexes and
// its event) is one MULTI/EXEC in one slot: an account is never half
// written. Credentials are sealed (AES-256-GCM, package seal) before they
// reach Redis and opened when read; the clientId is kept only as a SHA-256
// in key names and sealed inside the account, so Redis holds neither an API
// key nor a clientId in clear.
package store
