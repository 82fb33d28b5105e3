package verify_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/verify"
)

// defaultHosts are config.DefaultCRMHosts, repeated here so that verify's
// tests do not depend on config and the table reads on its own.
var defaultHosts = []string{
	"retailcrm.ru", "retailcrm.pro", "retailcrm.es", "retailcrm.io",
	"simla.com", "simla.io",
}

// addressRow is one row of ../testdata/addresses.json: an input and either
// the canonical form it must become (want) or the kind of rejection.
type addressRow struct {
	Input    string `json:"input"`
	Insecure bool   `json:"insecure"`
	// Hosts are listed in CRM_ALLOWED_HOSTS beside the defaults.
	Hosts  []string `json:"hosts"`
	Want   string   `json:"want"`
	Reject string   `json:"reject"` // "invalid" or "not_allowed"
	Note   string   `json:"note"`
}

func (r addressRow) policy() verify.AddressPolicy {
	return verify.AddressPolicy{AllowedHosts: r.allowed(), AllowInsecure: r.Insecure}
}

func (r addressRow) allowed() []string {
	return append(append([]string(nil), defaultHosts...), r.Hosts...)
}

func loadAddresses(t testing.TB) []addressRow {
	t.Helper()
	b, err := os.ReadFile("../testdata/addresses.json")
	require.NoError(t, err)
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields() // a misspelt "rejct" must not turn a row into a silent pass
	var rows []addressRow
	require.NoError(t, dec.Decode(&rows))
	require.NotEmpty(t, rows)
	for i, r := range rows {
		require.NotEmpty(t, r.Note, "row %d (%q) needs a note: the table is documentation", i, r.Input)
		require.True(t, (r.Want == "") != (r.Reject == ""), "row %d (%q): exactly one of want and reject", i, r.Input)
		if r.Reject != "" {
			require.Contains(t, []string{"invalid", "not_allowed"}, r.Reject, "row %d (%q)", i, r.Input)
		}
	}
	return rows
}

var rejectKinds = map[string]error{
	"invalid":     verify.ErrAddressInvalid,
	"not_allowed": verify.ErrAddressNotAllowed,
}

func TestCanonicalTable(t *testing.T) {
	for _, r := range loadAddresses(t) {
		mode := "secure"
		if r.Insecure {
			mode = "insecure"
		}
		t.Run(mode+"/"+r.Note, func(t *testing.T) {
			got, err := r.policy().Canonical(r.Input)
			if r.Want != "" {
				require.NoError(t, err, "input %q", r.Input)
				assert.Equal(t, r.Want, got)
				again, err := r.policy().Canonical(got)
				require.NoError(t, err, "the canonical form must itself be accepted")
				assert.Equal(t, got, again, "canonical form must be a fixed point")
				return
			}
			require.Error(t, err, "input %q was accepted as %q", r.Input, got)
			assert.Empty(t, got)
			assert.ErrorIs(t, err, rejectKinds[r.Reject], "input %q", r.Input)
			other := verify.ErrAddressInvalid
			if r.Reject == "invalid" {
				other = verify.ErrAddressNotAllowed
			}
			assert.NotErrorIs(t, err, other)
		})
	}
}

// Development mode only ever adds: what secure mode accepts, insecure mode
// accepts the same way, and what insecure mode rejects, secure mode rejects.
func TestInsecureModeOnlyWidens(t *testing.T) {
	for _, r := range loadAddresses(t) {
		secure := verify.AddressPolicy{AllowedHosts: r.allowed()}
		insecure := verify.AddressPolicy{AllowedHosts: r.allowed(), AllowInsecure: true}
		switch {
		case !r.Insecure && r.Want != "":
			got, err := insecure.Canonical(r.Input)
			if assert.NoError(t, err, "input %q", r.Input) {
				assert.Equal(t, r.Want, got, "input %q", r.Input)
			}
		case r.Insecure && r.Reject != "":
			_, err := secure.Canonical(r.Input)
			assert.Error(t, err, "input %q", r.Input)
		}
	}
}

// The reason is shown to the shop owner and logged: it must never echo the
// address, which a caller controls (log injection, a key pasted by mistake).
func TestAddressErrorNeverQuotesTheInput(t *testing.T) {
	for _, r := range loadAddresses(t) {
		if r.Reject == "" || strings.TrimSpace(r.Input) == "" {
			continue
		}
		_, err := r.policy().Canonical(r.Input)
		var ae *verify.AddressError
		require.ErrorAs(t, err, &ae, "input %q", r.Input)
		assert.NotEmpty(t, ae.Reason())
		for _, s := range []string{ae.Reason(), err.Error()} {
			assert.NotContains(t, s, strings.TrimSpace(r.Input))
			assert.NotContains(t, s, "evil")
			if u, perr := url.Parse(strings.TrimSpace(r.Input)); perr == nil && len(u.Hostname()) >= 4 {
				assert.NotContains(t, strings.ToLower(s), strings.ToLower(u.Hostname()), "input %q", r.Input)
			}
		}
	}
}

func TestCanonicalExtraHosts(t *testing.T) {
	extra := []string{"crm.example.com"}
	p := verify.AddressPolicy{
		AllowedHosts: defaultHosts,
		ExtraHosts:   func() []string { return extra },
	}

	t.Run("a host allowed only through ExtraHosts", func(t *testing.T) {
		got, err := p.Canonical("https://Shop.CRM.example.com/")
		require.NoError(t, err)
		assert.Equal(t, "https://shop.crm.example.com", got)

		_, err = verify.AddressPolicy{AllowedHosts: defaultHosts}.Canonical("https://shop.crm.example.com")
		assert.ErrorIs(t, err, verify.ErrAddressNotAllowed, "without ExtraHosts the same host is refused")
	})
	t.Run("AllowedHosts still apply beside ExtraHosts", func(t *testing.T) {
		got, err := p.Canonical("https://shop.simla.com")
		require.NoError(t, err)
		assert.Equal(t, "https://shop.simla.com", got)
	})
	t.Run("ExtraHosts suffixes match at a label boundary", func(t *testing.T) {
		_, err := p.Canonical("https://evilcrm.example.com")
		assert.ErrorIs(t, err, verify.ErrAddressNotAllowed)
		_, err = p.Canonical("https://crm.example.com.evil.com")
		assert.ErrorIs(t, err, verify.ErrAddressNotAllowed)
	})
	t.Run("ExtraHosts is asked on every call", func(t *testing.T) {
		extra = []string{"other.example.org"}
		t.Cleanup(func() { extra = []string{"crm.example.com"} })
		_, err := p.Canonical("https://shop.crm.example.com")
		assert.ErrorIs(t, err, verify.ErrAddressNotAllowed)
		_, err = p.Canonical("https://shop.other.example.org")
		assert.NoError(t, err)
	})
	t.Run("an empty suffix from ExtraHosts allows nothing", func(t *testing.T) {
		q := verify.AddressPolicy{ExtraHosts: func() []string { return []string{""} }}
		_, err := q.Canonical("https://anything.example.com")
		assert.ErrorIs(t, err, verify.ErrAddressNotAllowed)
	})
}

func TestCanonicalAllowedPorts(t *testing.T) {
	p := verify.AddressPolicy{AllowedHosts: defaultHosts, AllowedPorts: []string{"8443"}}
	tests := []struct {
		name, in, want string
		wantErr        error
	}{
		{"an allowed port is kept", "https://shop.retailcrm.ru:8443", "https://shop.retailcrm.ru:8443", nil},
		{"an allowed port with a leading zero is the same port", "https://shop.retailcrm.ru:08443/", "https://shop.retailcrm.ru:8443", nil},
		{"the default port is still dropped", "https://shop.retailcrm.ru:443", "https://shop.retailcrm.ru", nil},
		{"no port is fine", "https://shop.retailcrm.ru", "https://shop.retailcrm.ru", nil},
		{"another port is refused", "https://shop.retailcrm.ru:9443", "", verify.ErrAddressInvalid},
		{"an allowed port does not open other hosts", "https://evil.com:8443", "", verify.ErrAddressNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.Canonical(tt.in)
			if tt.wantErr != nil {
				assert.ErrorIs(t, err, tt.wantErr)
				assert.Empty(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestZeroPolicyAllowsNothing(t *testing.T) {
	_, err := verify.AddressPolicy{}.Canonical("https://shop.retailcrm.ru")
	assert.ErrorIs(t, err, verify.ErrAddressNotAllowed)
}

func TestAddressErrorKinds(t *testing.T) {
	_, err := verify.AddressPolicy{AllowedHosts: defaultHosts}.Canonical("http://shop.retailcrm.ru")
	var ae *verify.AddressError
	require.True(t, errors.As(err, &ae))
	assert.Equal(t, verify.ErrAddressInvalid, ae.Kind)
	assert.Equal(t, "it must use https", ae.Reason())
	assert.Equal(t, verify.ErrAddressInvalid.Error()+": it must use https", err.Error())
}
