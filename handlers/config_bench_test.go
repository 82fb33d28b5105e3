package handlers_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// bareConfig is the limit /config is held to: a bare net/http handler
// writing the same bytes with the same Content-Type, its route checked.
func bareConfig(body []byte, contentType string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/config" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
}

// BenchmarkConfig serves GET /config in memory (no network): "echo" through
// the full stack (router, every middleware, the handler, the JSON request
// log), "bare" through bareConfig with the bytes echo sent. "ratio" runs
// both in alternating batches and reports bare-ns/req, echo-ns/req and
// echo-throughput/bare (bare time over echo time: 1 is parity).
func BenchmarkConfig(b *testing.B) {
	mr := miniredis.RunT(b)
	srv := newBenchServer(b, redis.NewClient(&redis.Options{Addr: mr.Addr()}), "bench")
	req := httptest.NewRequest(http.MethodGet, "/config", nil)
	rec := httptest.NewRecorder()
	srv.e.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("/config answered %d", rec.Code)
	}
	bare := bareConfig(rec.Body.Bytes(), rec.Header().Get("Content-Type"))
	handlers := []struct {
		name string
		h    http.Handler
	}{{"bare", bare}, {"echo", srv.e}}
	for _, hc := range handlers {
		b.Run(hc.name, func(b *testing.B) {
			w := newDiscardWriter()
			b.ReportAllocs()
			for b.Loop() {
				w.reset()
				hc.h.ServeHTTP(w, req)
			}
			if w.status != http.StatusOK || w.n != rec.Body.Len() {
				b.Fatalf("status %d, %d bytes; want 200, %d bytes", w.status, w.n, rec.Body.Len())
			}
		})
	}
	b.Run("ratio", func(b *testing.B) {
		const batch = 64
		w := newDiscardWriter()
		var spent [2]time.Duration
		n := 0
		for b.Loop() {
			for i, hc := range handlers {
				start := time.Now()
				for range batch {
					w.reset()
					hc.h.ServeHTTP(w, req)
				}
				spent[i] += time.Since(start)
			}
			n += batch
		}
		bareNs := float64(spent[0].Nanoseconds()) / float64(n)
		echoNs := float64(spent[1].Nanoseconds()) / float64(n)
		b.ReportMetric(bareNs, "bare-ns/req")
		b.ReportMetric(echoNs, "echo-ns/req")
		b.ReportMetric(bareNs/echoNs, "echo-throughput/bare")
	})
}
