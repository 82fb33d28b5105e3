// Package serviceapi is the service API: what the module's own services
// (its workers, its backend) call with a SERVICE_TOKEN to use the shops
// the service connected (docs/service-api.md). It reads a shop's
// credentials (every read on the event stream) and proxies calls to the
// shop's CRM API with the shop's key, under the CRM's rate limit, shared
// by every replica.
//
// Its handlers return errors; package handlers owns the one error table
// and the problem shape both this API and the admin API answer with, and
// the bearer check in front of it. The CRM protocol is crm's (Forward),
// the queue per shop ratelimit's (Pacer), storage store's.
package serviceapi
