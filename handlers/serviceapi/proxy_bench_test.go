package serviceapi_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/modulehub/simpleconnect/store/storetest"
)

// BenchmarkProxy is one proxied GET /api/v5/orders through the whole
// service (router, middleware, bearer check, the account and the shop's
// turn in one Redis pipeline, the guarded outbound call, the reply
// streamed back, the log line) to the fake CRM, over loopback, with the
// rate limit raised so that no call waits. Its allocations are the
// proxy's own plus both loopback clients'; cmd/loadtest -phases proxy
// measures it as deployed against a bare reverse proxy.
func BenchmarkProxy(b *testing.B) {
	storetest.EachB(b, func(b *testing.B, be *storetest.Backend) {
		if be.Name == "cluster" {
			b.Skip("a Redis Cluster is not a REDIS_URL")
		}
		e := newEnv(b, be, nil, withRate(1_000_000, 0))
		acc := e.connect("bench-shop-key-0001")
		req, err := http.NewRequestWithContext(b.Context(), http.MethodGet, e.srvs[0].URL+"/service/api/accounts/"+acc.ID+"/crm/api/v5/orders", nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+serviceToken)
		client := &http.Client{}
		b.ReportAllocs()
		for b.Loop() {
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}
