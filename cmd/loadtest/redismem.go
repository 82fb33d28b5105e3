package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// keyClass is one kind of key of the store, by the name part after the
// key prefix's hash tag: acct, shop, client, idx, inflight, events...
type keyClass struct {
	Kind  string
	Keys  int
	Bytes int64
}

// scanKeys lists this run's keys: every name holding its random prefix
// (the store's "{prefix}:…" and the limits' "rate:prefix:fail:…" and
// "rate:prefix:shop:…").
func scanKeys(ctx context.Context, rdb redis.UniversalClient, prefix string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	it := rdb.Scan(ctx, 0, "*"+prefix+"*", 1000).Iterator()
	for it.Next(ctx) {
		if k := it.Val(); !seen[k] { // SCAN may return a key twice
			seen[k] = true
			out = append(out, k)
		}
	}
	return out, it.Err()
}

// redisMemory sums MEMORY USAGE (SAMPLES 0: every element counted) over
// this run's keys, by kind.
func redisMemory(ctx context.Context, rdb redis.UniversalClient, prefix string) (map[string]*keyClass, error) {
	keys, err := scanKeys(ctx, rdb, prefix)
	if err != nil {
		return nil, err
	}
	tag := "{" + prefix + "}:"
	classes := map[string]*keyClass{}
	for start := 0; start < len(keys); start += 500 {
		batch := keys[start:min(start+500, len(keys))]
		cmds := make([]*redis.IntCmd, len(batch))
		if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range batch {
				cmds[i] = p.MemoryUsage(ctx, k, 0)
			}
			return nil
		}); err != nil {
			return nil, err
		}
		for i, k := range batch {
			kind := "ratelimit"
			if rest, ok := strings.CutPrefix(k, tag); ok {
				kind, _, _ = strings.Cut(rest, ":")
			}
			c := classes[kind]
			if c == nil {
				c = &keyClass{Kind: kind}
				classes[kind] = c
			}
			c.Keys++
			c.Bytes += cmds[i].Val()
		}
	}
	return classes, nil
}

// deleteKeys deletes this run's keys, and only those.
func deleteKeys(ctx context.Context, rdb redis.UniversalClient, prefix string) (int, error) {
	keys, err := scanKeys(ctx, rdb, prefix)
	if err != nil {
		return 0, err
	}
	for start := 0; start < len(keys); start += 500 {
		if err := rdb.Del(ctx, keys[start:min(start+500, len(keys))]...).Err(); err != nil {
			return start, err
		}
	}
	return len(keys), nil
}

// redisProc reads the CPU time of the Redis server when it runs on this
// machine (its process id from INFO, its /proc entry readable): that is the
// cost of the Lua scripts and commands, which neither server's own CPU
// shows. It is the whole server's: other clients' commands count too.
type redisProc struct{ pid int }

func newRedisProc(ctx context.Context, rdb redis.UniversalClient) *redisProc {
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return &redisProc{}
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, _ := strconv.Atoi(v)
			if pid > 0 && pid != os.Getpid() {
				if _, err := procCPU(pid); err == nil {
					return &redisProc{pid: pid}
				}
			}
		}
	}
	return &redisProc{}
}

func (p *redisProc) cpu() time.Duration {
	if p == nil || p.pid == 0 {
		return 0
	}
	d, _ := procCPU(p.pid)
	return d
}

func (p *redisProc) known() bool { return p != nil && p.pid != 0 }
