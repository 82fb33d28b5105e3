// Package connect owns the life of a shop's connection: proving an API key
// at the shop's address with the CRM's module edit, keeping the shop's CRM
// in step with the account (switch-offs, activity callbacks, moves,
// resyncs), recording exactly what the CRM accepted so that no crash or
// lost reply leaves an orphan, a half-replaced key or a CRM that disagrees,
// and finishing what a crash or a lost reply left undone (the sweeper).
//
// Everything that talks to a shop's CRM does it under the account's lease
// (store.Lease), taken in this process in order (keyedLocks) and across
// replicas in Redis: same-shop requests wait their turn, never fail.
// model_test.go checks the whole against a model CRM over random
// operation sequences.
//
// HTTP lives in handlers, the CRM protocol in crm, storage in store.
package connect
