package verify_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/verify"
)

// FuzzToken: Token never panics, whatever it is handed; a token made by Sign
// always verifies, against the right index; and Token never accepts a token
// that is not (a case variant of) the real MAC.
//
// Seeds: testdata/fuzz/FuzzToken. Run: go test -run='^$' -fuzz=FuzzToken ./verify
func FuzzToken(f *testing.F) {
	f.Add("secret", "api_key", "016ab397889c59a1f61a07d69857880a0d867aa1b0edb1014971757cf7a25bb1")
	f.Fuzz(func(t *testing.T, secret, apiKey, token string) {
		secrets := []redact.Secret{"another-secret", redact.Secret(secret)}

		// Arbitrary input: no panic, and success only for the real MAC.
		i, err := verify.Token(secrets, redact.Secret(apiKey), redact.Secret(token))
		if err == nil {
			want := verify.Sign(secrets[i], redact.Secret(apiKey))
			if strings.ToLower(token) != want {
				t.Fatalf("Token accepted %q, the MAC of secret #%d is %q", token, i, want)
			}
		} else if i != -1 {
			t.Fatalf("Token failed with index %d, want -1", i)
		}

		// A signed token always verifies.
		signed := verify.Sign(redact.Secret(secret), redact.Secret(apiKey))
		if len(signed) != 64 || strings.ToLower(signed) != signed {
			t.Fatalf("Sign returned %q, want 64 lowercase hex digits", signed)
		}
		i, err = verify.Token(secrets, redact.Secret(apiKey), redact.Secret(signed))
		if err != nil {
			t.Fatalf("a token made by Sign does not verify: %v", err)
		}
		want := 1
		if secret == "another-secret" {
			want = 0 // the same secret listed first matches first
		}
		if i != want {
			t.Fatalf("matched secret #%d, want #%d", i, want)
		}
	})
}

// FuzzCanonical: Canonical never panics; what it accepts is a fixed point
// (Canonical(Canonical(x)) == Canonical(x)), has no userinfo, path, query or
// fragment, and its host ends with an allowed suffix or is the one IP
// address listed, in development mode too (it relaxes scheme and port
// only).
//
// Seeds: testdata/fuzz/FuzzCanonical and every row of
// ../testdata/addresses.json. Run: go test -run='^$' -fuzz=FuzzCanonical ./verify
func FuzzCanonical(f *testing.F) {
	for _, r := range loadAddresses(f) {
		f.Add(r.Input, r.Insecure)
	}
	f.Fuzz(func(t *testing.T, raw string, insecure bool) {
		p := verify.AddressPolicy{
			AllowedHosts:  append(append([]string(nil), defaultHosts...), "127.0.0.1"),
			AllowedPorts:  []string{"8443"},
			AllowInsecure: insecure,
		}
		got, err := p.Canonical(raw)
		if err != nil {
			if got != "" {
				t.Fatalf("rejected with a non-empty result %q", got)
			}
			return
		}

		again, err := p.Canonical(got)
		if err != nil {
			t.Fatalf("Canonical(%q) = %q, which is then rejected: %v", raw, got, err)
		}
		if again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q", raw, got, again)
		}

		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("canonical %q does not parse: %v", got, err)
		}
		if strings.ContainsAny(got, "@?#\\ ") || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("canonical %q has userinfo, a query or a fragment", got)
		}
		if u.Path != "" || u.Opaque != "" {
			t.Fatalf("canonical %q has a path", got)
		}
		if got != strings.ToLower(got) {
			t.Fatalf("canonical %q is not lowercase", got)
		}
		if u.Scheme != "https" && !(insecure && u.Scheme == "http") {
			t.Fatalf("canonical %q has scheme %q", got, u.Scheme)
		}
		if host := u.Hostname(); !allowedSuffix(host) && host != "127.0.0.1" {
			t.Fatalf("canonical %q: host %q is neither under an allowed suffix nor the listed address (insecure: %v)", got, host, insecure)
		}
	})
}

func allowedSuffix(host string) bool {
	for _, s := range defaultHosts {
		if host == s || strings.HasSuffix(host, "."+s) {
			return true
		}
	}
	return false
}
