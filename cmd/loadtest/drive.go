package main

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// run is the outcome of driving one target.
type run struct {
	Done    int             // requests completed, failed ones included
	Failed  int             // transport errors or unexpected replies
	Elapsed time.Duration   // from the first request sent to the last reply read
	CPU     time.Duration   // user+system CPU of this whole process (the load generator) meanwhile
	Latency []time.Duration // per request index; -1 when not sent
}

// drive calls do for request indexes 0..count-1 from conc workers (0..conc-1)
// until every index is done, the duration has passed or ctx ends, whichever
// comes first: bounded in count and in time. do measures its own latency,
// so it can keep request preparation out of it.
func drive(ctx context.Context, conc, count int, duration time.Duration, do func(ctx context.Context, worker, i int) (time.Duration, error)) run {
	r := run{Latency: make([]time.Duration, count)}
	for i := range r.Latency {
		r.Latency[i] = -1
	}
	ctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	var (
		next   atomic.Int64
		failed atomic.Int64
		wg     sync.WaitGroup
	)
	cpu0 := processCPU()
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= count {
					return
				}
				d, err := do(ctx, w, i)
				if err != nil {
					if ctx.Err() != nil { // cut short by the time bound: not a failure, not a sample
						return
					}
					failed.Add(1)
				}
				r.Latency[i] = d
			}
		}()
	}
	wg.Wait()
	r.Elapsed = time.Since(start)
	r.CPU = processCPU() - cpu0
	r.Failed = int(failed.Load())
	for _, d := range r.Latency {
		if d >= 0 {
			r.Done++
		}
	}
	return r
}

// samples returns the latencies of the requests that were sent.
func (r run) samples() []time.Duration {
	out := make([]time.Duration, 0, r.Done)
	for _, d := range r.Latency {
		if d >= 0 {
			out = append(out, d)
		}
	}
	return out
}

// percentile is the nearest-rank p-th percentile (0 < p <= 100).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(rank, len(s)-1))]
}

// processCPU is the user+system CPU time this process has used. Per
// request, it is steadier than throughput on a machine others use too.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
