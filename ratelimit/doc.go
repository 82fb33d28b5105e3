// Package ratelimit holds the service's limits, all shared by every
// replica through Redis (GCRA: one Lua call per check, Redis's own clock,
// keys that expire on their own), so ten replicas behind a load balancer
// share one budget:
//
//   - Failures: failed requests per client address (go-redis/redis_rate).
//     Valid requests are never counted and never refused; an address over
//     its budget has its failures refused fast.
//   - Attempts: register (and switch-off) attempts that reach one shop's
//     CRM with one API key, so a replayed register cannot burn the shop's
//     CRM quota (a script of our own, which also tells when the last one
//     went).
//   - Pacer: every call to one shop's CRM, spaced at the CRM's rate
//     (redis_rate's script, run here so that the proxy can send it in the
//     pipeline that reads the account).
//
// It decides nothing about what failed: handlers call Failures.Fail only
// for a request that already failed its checks.
package ratelimit
