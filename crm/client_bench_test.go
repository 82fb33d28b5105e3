package crm_test

import (
	"testing"

	"github.com/modulehub/simpleconnect/crm"
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
