package crm_test

import (
	"context"
	"testing"

	"github.com/modulehub/simpleconnect/crm"
	"github.com/modulehub/simpleconnect/crm/crmtest"
)

// BenchmarkEncodeModule measures building the integrationModule form value
// sent with every edit: one json.Marshal of the module.
func BenchmarkEncodeModule(b *testing.B) {
	m := crm.Module{
		Code: "demo", IntegrationCode: "demo", Active: true, Name: "Demo module",
		Logo: "https://module.example.com/static/logo.svg", ClientID: "bR9n2oG4kz1r0kYQe8Qb2m1gG5qQZt7wXcVhJpLs3aU",
		BaseURL: "https://module.example.com", AccountURL: "https://module.example.com/account",
		Actions: map[string]string{"activity": "/activity"},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := crm.EncodeModule(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCalls is one key check and one edit, as a register makes them,
// against the fake CRM over loopback, with an attempt observer set as the
// service sets one (metrics). The fake runs in this process: its work is
// in the figures too.
func BenchmarkCalls(b *testing.B) {
	fake := crmtest.New(b)
	c := crm.New(crm.Options{AllowInsecure: true, OnAttempt: func(crm.Attempt) {}})
	m := crm.Module{Code: "demo", Name: "Demo module", ClientID: "client-id", BaseURL: "https://module.example.com"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.FetchCredentials(ctx, fake.URL, "bench-key"); err != nil {
			b.Fatal(err)
		}
		if _, err := c.EditModule(ctx, fake.URL, "bench-key", m); err != nil {
			b.Fatal(err)
		}
	}
}
