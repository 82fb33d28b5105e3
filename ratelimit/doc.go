// Package ratelimit limits requests per client across every replica of the
// service: the counters live in Redis (GCRA, github.com/go-redis/redis_rate),
// so ten replicas behind a load balancer share one budget per client.
package ratelimit
