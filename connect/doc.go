// Package connect owns the life of a shop's connection: proving an API key
// at the shop's address with the CRM's module edit, recording the outcome so
// that no crash leaves an orphan or a half-replaced key, and finishing
// connections a crash or a lost reply left pending (the sweeper).
//
// HTTP lives in handlers, the CRM protocol in crm, storage in store.
package connect
