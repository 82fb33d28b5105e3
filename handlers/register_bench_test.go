package handlers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/verify"
	"github.com/modulehub/simpleconnect/webhook"
)

// BenchmarkParseRegister reads a register form as the CRM sends it, in both
// shapes (the form itself already parsed, as echo hands it over).
func BenchmarkParseRegister(b *testing.B) {
	const apiKey = "bench-api-key-0123456789abcdef"
	token := verify.Sign(testSecret, apiKey)
	body, _ := json.Marshal(map[string]string{"apiKey": apiKey, "systemUrl": "https://shop.retailcrm.ru", "token": token})
	for _, bc := range []struct {
		name string
		form url.Values
	}{
		{"json-form", url.Values{"register": {string(body)}}},
		{"bracket-form", url.Values{
			"register[apiKey]": {apiKey}, "register[systemUrl]": {"https://shop.retailcrm.ru"}, "register[token]": {token},
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := webhook.ParseRegister(bc.form); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRegister is one POST /register through the real server: form
// parsing, token, address check, the attempt bound, credentials check and
// module edit against the fake CRM over loopback, BeginConnect and Record,
// the JSON request log. Every iteration reconnects the same shop (the fake
// CRM has one address) with a new key, as the CRM issues one per
// connection: the same key again would be a replay past the attempt bound,
// answered from the stored state without the CRM. A first connection
// differs only in a new id and clientId. Allocations include the fake
// CRM's and, on miniredis, the embedded Redis's: they run in this process.
func BenchmarkRegister(b *testing.B) {
	benchBackends(b, func(b *testing.B, rdb func() redis.UniversalClient, prefix string) {
		srv := newBenchServer(b, rdb(), prefix)
		n := 0
		send := func() *httptest.ResponseRecorder {
			n++
			apiKey := fmt.Sprintf("bench-api-key-%08d-0123456789abcdef", n)
			payload, _ := json.Marshal(map[string]string{
				"apiKey": apiKey, "systemUrl": srv.fake.URL, "token": verify.Sign(testSecret, redact.Secret(apiKey)),
			})
			req := httptest.NewRequest(http.MethodPost, "/register", strings.NewReader(url.Values{"register": {string(payload)}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			rec := httptest.NewRecorder()
			srv.e.ServeHTTP(rec, req)
			return rec
		}
		if rec := send(); !strings.Contains(rec.Body.String(), `"success":true`) {
			b.Fatalf("register failed: %s", rec.Body.String())
		}
		b.ReportAllocs()
		for b.Loop() {
			if rec := send(); !strings.Contains(rec.Body.String(), `"success":true`) {
				b.Fatalf("register failed: %s", rec.Body.String())
			}
		}
		if got := srv.fake.Edits(); len(got) != n {
			b.Fatalf("the CRM saw %d edits for %d registers: not every register reached it", len(got), n)
		}
	})
}
