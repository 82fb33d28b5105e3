package verify

import (
	"errors"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Errors of Address.Canonical. Both wrap a short reason that is safe to show
// to a shop owner (it never quotes the address back).
var (
	ErrAddressInvalid    = errors.New("verify: systemUrl is not a valid CRM address")
	ErrAddressNotAllowed = errors.New("verify: systemUrl is not an allowed CRM host")
)

// AddressPolicy decides which shop addresses (systemUrl) the service talks
// to. The zero value allows nothing.
type AddressPolicy struct {
	// AllowedHosts are host suffixes: a host is allowed when it equals one
	// or ends with "." + one. An IP literal in the list allows exactly that
	// address (never as a suffix); no other IP address is ever allowed.
	AllowedHosts []string
	// ExtraHosts, when set, returns more suffixes (the CRM's published
	// domain lists); it must be cheap and never block.
	ExtraHosts func() []string
	// AllowedPorts are ports besides the scheme's default a systemUrl may
	// name. Empty: only the default port.
	AllowedPorts []string
	// MoveHosts are host suffixes an account follows its shop to on an
	// activity callback (the CRM's own clouds); elsewhere the owner
	// reconnects. See Follows.
	MoveHosts []string
	// AllowInsecure is for local development and tests: http and any port
	// are allowed too. Which hosts are CRMs stays AllowedHosts' decision:
	// a loopback address or localhost must be listed there like any host.
	AllowInsecure bool
}

// AddressError is a rejected address: its kind and a reason that is safe
// to show to the shop owner, in English and as a stable code (the module
// card says it in the shop's language: catalog key "card.address.<code>").
type AddressError struct {
	Kind   error
	code   string
	reason string
}

func (e *AddressError) Error() string  { return e.Kind.Error() + ": " + e.reason }
func (e *AddressError) Unwrap() error  { return e.Kind }
func (e *AddressError) Reason() string { return e.reason }
func (e *AddressError) Code() string   { return e.code }

func invalid(code, reason string) error    { return &AddressError{ErrAddressInvalid, code, reason} }
func disallowed(code, reason string) error { return &AddressError{ErrAddressNotAllowed, code, reason} }

// Canonical returns the one form of a shop address used for allow-list
// checks, identity and storage: scheme and host lowercased, host in IDNA
// ASCII form without a trailing dot, default port dropped, no path, query,
// fragment or userinfo. So "HTTPS://Shop.RetailCRM.ru:443/" and
// "https://shop.retailcrm.ru" are one shop, and
// "https://shop.retailcrm.ru.evil.com" is not one of the CRM's.
func (p AddressPolicy) Canonical(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", invalid("empty", "it is empty")
	}
	if len(raw) > 2048 {
		return "", invalid("too_long", "it is too long")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", invalid("not_url", "it is not a URL")
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme == "https":
	case scheme == "http" && p.AllowInsecure:
	case scheme == "http":
		return "", invalid("https", "it must use https")
	default:
		return "", invalid("scheme", "it must be an https URL")
	}
	if u.Opaque != "" || u.Host == "" {
		return "", invalid("no_host", "it has no host")
	}
	if u.User != nil {
		return "", invalid("userinfo", "it must not contain a user name or password")
	}
	if u.Path != "" && u.Path != "/" || u.RawPath != "" {
		return "", invalid("path", "it must not contain a path")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
		return "", invalid("query", "it must not contain a query or fragment")
	}

	host, port := u.Hostname(), u.Port()
	if !utf8.ValidString(host) {
		// IDNA maps a stray byte ("\xf7", or "%80" once unescaped) to U+FFFD
		// and encodes that as xn--zn7c without an error, but rejects the same
		// label on the way back: the canonical form would not be canonical
		// (found by FuzzCanonical).
		return "", invalid("host", "its host name is not valid")
	}
	if strings.Contains(u.Host, ":") && port == "" && !strings.HasSuffix(u.Host, "]") {
		return "", invalid("empty_port", "it has an empty port")
	}
	if port != "" {
		// One spelling per port: "0443" is 443, so it is the default port
		// (one shop, one canonical form), and 0 or >65535 is no port at all.
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", invalid("bad_port", "its port is not valid")
		}
		port = strconv.Itoa(n)
	}
	if port == defaultPort(scheme) {
		port = ""
	}
	if port != "" && !p.AllowInsecure && !slices.Contains(p.AllowedPorts, port) {
		return "", invalid("port", "it must not name a port")
	}

	if ip, err := netip.ParseAddr(host); err == nil {
		if !p.ipAllowed(ip.WithZone("").Unmap()) {
			return "", disallowed("ip", "it must be a CRM host name, not an IP address")
		}
		if ip.Zone() != "" {
			// fe80::1%eth0 names an interface of this machine, never a
			// CRM; and the zone would need re-escaping to stay a URL.
			return "", invalid("zone", "its IP address must not name a network interface")
		}
		ip = ip.Unmap()
		host = ip.String()
		if ip.Is6() {
			host = "[" + host + "]"
		}
		return join(scheme, host, port), nil
	}

	host = strings.TrimSuffix(host, ".")
	ascii, err := hostProfile.ToASCII(host)
	if err != nil || ascii == "" || len(ascii) > 253 || strings.ContainsAny(ascii, "%_*") {
		return "", invalid("host", "its host name is not valid")
	}
	host = strings.ToLower(ascii)
	if !p.hostAllowed(host) {
		return "", disallowed("not_crm", "it is not the address of a RetailCRM / Simla.com account")
	}
	return join(scheme, host, port), nil
}

// hostProfile is idna.Lookup plus VerifyDNSLength: Lookup alone lets empty
// labels ("shop..retailcrm.ru", ".retailcrm.ru") and labels over 63 bytes
// through, which no DNS name has, so they would pass the suffix check and
// be stored as a shop's address.
var hostProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false), idna.VerifyDNSLength(true))

func (p AddressPolicy) hostAllowed(host string) bool {
	if suffixMatch(host, p.AllowedHosts) {
		return true
	}
	return p.ExtraHosts != nil && suffixMatch(host, p.ExtraHosts())
}

// ipAllowed reports whether AllowedHosts lists ip itself. ExtraHosts (the
// CRM's published domain lists) never open an IP address.
func (p AddressPolicy) ipAllowed(ip netip.Addr) bool {
	for _, s := range p.AllowedHosts {
		if listed, ok := ParseHostIP(s); ok && listed == ip {
			return true
		}
	}
	return false
}

// ParseHostIP reads an allow-list entry that is an IP address ("127.0.0.1",
// "::1" or "[::1]"), unmapped; ok is false for a host name.
func ParseHostIP(entry string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(entry, "["), "]"))
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// suffixMatch matches host names only: an IP entry is no suffix ("0.0.1"
// must not allow "x.127.0.0.1").
func suffixMatch(host string, suffixes []string) bool {
	for _, s := range suffixes {
		if s == "" {
			continue
		}
		if _, isIP := ParseHostIP(s); isIP {
			continue
		}
		if host == s || strings.HasSuffix(host, "."+s) {
			return true
		}
	}
	return false
}

func defaultPort(scheme string) string {
	if scheme == "http" {
		return "80"
	}
	return "443"
}

func join(scheme, host, port string) string {
	if port != "" {
		if strings.HasPrefix(host, "[") {
			return scheme + "://" + host + ":" + port
		}
		return scheme + "://" + net.JoinHostPort(host, port)
	}
	return scheme + "://" + host
}

// Follows reports whether an account may follow its shop to this
// (canonical) address by itself, on an activity callback: only when the
// host is under one of MoveHosts, the CRM's own clouds. Box installations
// and white-label domains are run by third parties: a clientId alone must
// not be enough to send a shop's key there.
func (p AddressPolicy) Follows(canonical string) bool {
	u, err := url.Parse(canonical)
	return err == nil && suffixMatch(strings.ToLower(u.Hostname()), p.MoveHosts)
}
