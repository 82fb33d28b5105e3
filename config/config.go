package config

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/modulehub/simpleconnect/redact"
	"github.com/modulehub/simpleconnect/settings"
	"github.com/modulehub/simpleconnect/verify"
)

// DefaultCRMHosts are the public domains under which RetailCRM / Simla.com
// accounts live; a systemUrl must be a host under one of them.
var DefaultCRMHosts = []string{
	"retailcrm.ru", "retailcrm.pro", "retailcrm.es", "retailcrm.io",
	"simla.com", "simla.io",
}

// LoopbackHosts join the default CRM_ALLOWED_HOSTS in CRM_ALLOW_INSECURE
// mode: a CRM on this machine, for development and tests.
var LoopbackHosts = []string{"127.0.0.1", "::1", "localhost"}

// KnownScopes are the API-key permissions the CRM knows (spec §1). A scope
// outside this list is almost certainly a typo that would make every
// connection fail later, so it stops the start.
var KnownScopes = []string{
	"integration_read", "integration_write", "order_read", "order_write",
	"customer_read", "customer_write", "reference_read", "reference_write",
	"store_read", "store_write", "user_read", "user_write", "delivery_read",
	"delivery_write", "telephony_read", "telephony_write", "task_read",
	"task_write", "cost_read", "cost_write", "file_read", "file_write",
	"segment_read", "custom_fields_read", "custom_fields_write", "loyalty_read",
	"loyalty_write", "analytics_read", "analytics_write", "payments_read",
	"payments_write", "verification_read", "verification_write",
}

// Config is every setting of the service: one field per row of the README's
// environment table.
type Config struct {
	ListenAddr string `envconfig:"LISTEN_ADDR" default:":8080"`
	PublicURL  string `envconfig:"PUBLIC_URL" default:"http://localhost:8080"`

	// MODULE_CODE and MODULE_SECRETS are required, but not through
	// envconfig's required tag: it stops at the first missing one with a
	// line of its own shape, and lets MODULE_CODE= (empty) through anyway.
	// Validate reports both, with every other bad variable, one line each.
	ModuleCode            string     `envconfig:"MODULE_CODE"`
	ModuleIntegrationCode string     `envconfig:"MODULE_INTEGRATION_CODE"`
	ModuleName            string     `envconfig:"MODULE_NAME"`
	ModuleLogoURL         string     `envconfig:"MODULE_LOGO_URL"`
	ModuleSecrets         SecretList `envconfig:"MODULE_SECRETS"` // first is current; all verify
	ModuleScopes          List       `envconfig:"MODULE_SCOPES" default:"integration_read,integration_write"`
	// ModuleSettingsFile names the JSON file declaring the module's
	// connection variables (see settings.example.json); empty: none, and the
	// account page has no settings form.
	ModuleSettingsFile string `envconfig:"MODULE_SETTINGS_FILE"`

	// RedisURL may carry a password, so it is a Secret.
	RedisURL          redact.Secret `envconfig:"REDIS_URL"`
	RedisClusterAddrs List          `envconfig:"REDIS_CLUSTER_ADDRS"`
	RedisKeyPrefix    string        `envconfig:"REDIS_KEY_PREFIX" default:"simpleconnect"`
	// Sentinel: the master's name and the sentinels' addresses.
	RedisSentinelMaster string `envconfig:"REDIS_SENTINEL_MASTER"`
	RedisSentinelAddrs  List   `envconfig:"REDIS_SENTINEL_ADDRS"`
	// RedisPassword is for Cluster and Sentinel nodes (a REDIS_URL carries its own).
	RedisPassword redact.Secret `envconfig:"REDIS_PASSWORD"`

	CRMAllowedHosts  List          `envconfig:"CRM_ALLOWED_HOSTS"`
	CRMAllowInsecure bool          `envconfig:"CRM_ALLOW_INSECURE" default:"false"`
	CRMTimeout       time.Duration `envconfig:"CRM_TIMEOUT" default:"10s"`
	// CRMDomainsURLs are the CRM's published lists of account domains,
	// refreshed in the background and added to CRMAllowedHosts; empty: off.
	CRMDomainsURLs    List          `envconfig:"CRM_DOMAINS_URL"`
	CRMDomainsRefresh time.Duration `envconfig:"CRM_DOMAINS_REFRESH" default:"1h"`
	// CRMAllowedPorts are ports besides 443 a systemUrl may name (box
	// installations on a custom port).
	CRMAllowedPorts PortList `envconfig:"CRM_ALLOWED_PORTS"`

	// FailedRequestsPerMinute is the budget of failed requests (a bad
	// token, an unknown clientId, an unreadable request) per client address
	// on /register, /activity and POST /account, across replicas; past it,
	// that address's failures are refused fast. Valid requests are never
	// counted nor refused. 0 turns it off.
	FailedRequestsPerMinute int `envconfig:"FAILED_REQUESTS_PER_MINUTE" default:"30"`
	// ShopKeyAttemptsPerMinute bounds the registers (and switch-offs) that
	// reach one shop's CRM with one API key, across replicas; past it, a
	// register is answered from the stored state. 0 turns it off.
	ShopKeyAttemptsPerMinute int `envconfig:"SHOP_KEY_ATTEMPTS_PER_MINUTE" default:"3"`
	// TrustedProxies are the CIDRs of load balancers whose X-Forwarded-For
	// names the client; empty: the connection's peer is the client.
	TrustedProxies List `envconfig:"TRUSTED_PROXIES"`

	EncryptionKeys EncryptionKeys `envconfig:"ENCRYPTION_KEY"`
	AdminTokens    SecretList     `envconfig:"ADMIN_TOKEN"`

	SessionTTL      time.Duration `envconfig:"SESSION_TTL" default:"12h"`
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"15s"`
	// TokenSigningKeys sign the tokens for the module's own apps (the first
	// signs, all are in the JWKS); empty: token routes answer 404, except on
	// the embedded store, which makes an ephemeral key.
	TokenSigningKeys SigningKeys `envconfig:"TOKEN_SIGNING_KEY"`
	// ModuleAppURL is the module's own app: the account page offers "Open"
	// and sends the owner there with #token=<jwt>.
	ModuleAppURL string `envconfig:"MODULE_APP_URL"`
	// KeyCheckInterval is how often each active account's key is checked at
	// its CRM (spread evenly over the interval); 0 turns checks off.
	KeyCheckInterval time.Duration `envconfig:"KEY_CHECK_INTERVAL" default:"24h"`
	LogFormat        string        `envconfig:"LOG_FORMAT" default:"text"`
	LogLevel         slog.Level    `envconfig:"LOG_LEVEL" default:"info"`

	// The service API for the module's own services (docs/service-api.md):
	// their bearer tokens, never valid on the admin API (nor admin tokens
	// here), and the CRM proxy's rate per shop across replicas.
	ServiceTokens    SecretList `envconfig:"SERVICE_TOKEN"`
	CRMRatePerSecond int        `envconfig:"CRM_RATE_PER_SECOND" default:"10"`
}

// The defaults of the two limits, for code that builds a Config literal
// and wants what an unset variable gives (a test checks they match the
// tags above).
const (
	DefaultFailedRequestsPerMinute  = 30
	DefaultShopKeyAttemptsPerMinute = 3
)

// retired are variables that no longer exist, and what replaced them. Set,
// one stops the start: silently ignoring it would leave an operator
// believing a limit applies that does not.
var retired = map[string]string{
	"RATE_LIMIT_PER_MINUTE": "no longer exists: valid requests are never limited now; " +
		"use FAILED_REQUESTS_PER_MINUTE (failed requests per client address) and " +
		"SHOP_KEY_ATTEMPTS_PER_MINUTE (CRM attempts per shop and API key), then remove it",
}

// Load reads the process environment and validates it.
func Load() (Config, error) {
	var c Config
	var gone []error
	for _, name := range slices.Sorted(maps.Keys(retired)) {
		if _, set := os.LookupEnv(name); set {
			gone = append(gone, fmt.Errorf("config: %s: %s", name, retired[name]))
		}
	}
	if bad := process(&c); len(bad) > 0 {
		return c, errors.Join(append(gone, bad...)...)
	}
	c.applyDefaults()
	return c, errors.Join(append(gone, c.Validate())...)
}

// process reads the environment into c, reporting every variable envconfig
// cannot convert, not only the first: envconfig stops at the first, so a
// bad one is set aside (unset for the next pass, restored before
// returning) and the rest read again.
func process(c *Config) []error {
	var bad []error
	aside := map[string]string{}
	defer func() {
		for name, v := range aside {
			_ = os.Setenv(name, v)
		}
	}()
	for {
		err := envconfig.Process("", c)
		if err == nil {
			return bad
		}
		var pe *envconfig.ParseError
		if !errors.As(err, &pe) {
			return append(bad, fmt.Errorf("config: %w", err))
		}
		// pe.Value may be a secret: name the variable only
		bad = append(bad, fmt.Errorf("config: %s: %s", pe.KeyName, parseProblem(pe)))
		v, set := os.LookupEnv(pe.KeyName)
		if _, seen := aside[pe.KeyName]; seen || !set {
			return bad // cannot set it aside: stop rather than loop
		}
		aside[pe.KeyName] = v
		_ = os.Unsetenv(pe.KeyName)
	}
}

// parseProblem says what is wrong with a value envconfig could not convert,
// without repeating it. Not pe.Err: time.ParseDuration, strconv.ParseBool
// and slog.Level all quote their input ("time: invalid duration \"...\""),
// and CRM_TIMEOUT=<a secret pasted into the wrong variable> must not reach
// the log. Only our own decoders' errors (safeError) are passed on.
func parseProblem(pe *envconfig.ParseError) string {
	var se safeError
	if errors.As(pe.Err, &se) {
		return se.Error()
	}
	switch pe.TypeName {
	case "time.Duration":
		return "must be a duration, e.g. 10s or 1m30s"
	case "bool":
		return "must be true or false"
	case "slog.Level":
		return "must be debug, info, warn or error"
	}
	return "cannot be read as " + pe.TypeName
}

// safeError is an error text that never quotes the value being decoded.
type safeError string

func (e safeError) Error() string { return string(e) }

// applyDefaults fills the settings whose default is another setting.
func (c *Config) applyDefaults() {
	if c.ModuleIntegrationCode == "" {
		c.ModuleIntegrationCode = c.ModuleCode
	}
	if c.ModuleName == "" {
		c.ModuleName = c.ModuleCode
	}
	if len(c.CRMAllowedHosts) == 0 {
		c.CRMAllowedHosts = slices.Clone(DefaultCRMHosts)
		if c.CRMAllowInsecure {
			// The contract's development mode talks to a CRM on this
			// machine (a fake, crmsim): left unset, the allow list says so.
			// Set, it alone decides (every other IP literal must be listed).
			c.CRMAllowedHosts = append(c.CRMAllowedHosts, LoopbackHosts...)
		}
	}
	// One spelling per host (items are already trimmed by splitList): a
	// fully qualified "RetailCRM.ru." is the suffix "retailcrm.ru".
	for i, h := range c.CRMAllowedHosts {
		c.CRMAllowedHosts[i] = strings.TrimSuffix(strings.ToLower(h), ".")
	}
}

// WithDefaults returns c with the settings that default to other settings
// filled in, as Load does. Tests that build a Config literal call it.
func (c Config) WithDefaults() Config {
	c.CRMAllowedHosts = slices.Clone(c.CRMAllowedHosts)
	c.applyDefaults()
	if c.CRMRatePerSecond == 0 { // a literal leaves it out; the environment's default is the tag's
		c.CRMRatePerSecond = DefaultCRMRatePerSecond
	}
	return c
}

var (
	moduleCodeRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)
	hostRe       = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)
)

// Validate checks every rule and reports all broken ones, one line each.
func (c Config) Validate() error {
	var errs []error
	bad := func(name, why string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: "+why, append([]any{name}, args...)...))
	}

	if c.ListenAddr == "" {
		bad("LISTEN_ADDR", "must not be empty")
	}
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") ||
		u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		bad("PUBLIC_URL", "must be an absolute http(s) URL without query, e.g. https://module.example.com")
	}
	if c.ModuleCode == "" {
		bad("MODULE_CODE", "is required: the module code from the partner account")
	} else if !moduleCodeRe.MatchString(c.ModuleCode) {
		bad("MODULE_CODE", "must be the module code from the partner account (letters, digits, '-', '_', '.')")
	}
	// Equal to MODULE_CODE is the default: a bad MODULE_CODE is reported once.
	if c.ModuleIntegrationCode != "" && c.ModuleIntegrationCode != c.ModuleCode &&
		!moduleCodeRe.MatchString(c.ModuleIntegrationCode) {
		bad("MODULE_INTEGRATION_CODE", "must be letters, digits, '-', '_' or '.'")
	}
	if c.ModuleLogoURL != "" {
		if u, err := url.Parse(c.ModuleLogoURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("MODULE_LOGO_URL", "must be an absolute http(s) URL")
		}
	}
	if len(c.ModuleSecrets) == 0 {
		bad("MODULE_SECRETS", "is required: the secret from the module card of the partner account")
	}
	// Every list is checked by the rule splitList applies when reading it,
	// so a Config literal cannot hold what the environment could not.
	for _, l := range []struct {
		name  string
		items []string
	}{
		{"MODULE_SECRETS", c.ModuleSecrets.strings()}, {"MODULE_SCOPES", c.ModuleScopes},
		{"REDIS_CLUSTER_ADDRS", c.RedisClusterAddrs}, {"REDIS_SENTINEL_ADDRS", c.RedisSentinelAddrs},
		{"CRM_ALLOWED_HOSTS", c.CRMAllowedHosts}, {"CRM_DOMAINS_URL", c.CRMDomainsURLs},
		{"TRUSTED_PROXIES", c.TrustedProxies}, {"ADMIN_TOKEN", c.AdminTokens.strings()},
		{"SERVICE_TOKEN", c.ServiceTokens.strings()},
	} {
		if err := checkItems(l.items); err != nil {
			bad(l.name, "%v", err)
		}
	}
	if len(c.ModuleScopes) == 0 {
		bad("MODULE_SCOPES", "must list at least one scope")
	}
	// List errors name an item by its position, never its value: scope names
	// and host names are public, but a secret pasted into the wrong variable
	// is not.
	for i, s := range c.ModuleScopes {
		if !slices.Contains(KnownScopes, s) {
			bad("MODULE_SCOPES", "item #%d is not a scope the CRM knows (e.g. integration_read, order_read)", i+1)
		}
	}

	if _, err := settings.Load(c.ModuleSettingsFile); err != nil { // names the file and the fields, never a value
		bad("MODULE_SETTINGS_FILE", "%v", err)
	}

	if !c.RedisURL.IsZero() {
		if u, err := url.Parse(c.RedisURL.Reveal()); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
			bad("REDIS_URL", "must be a redis://, rediss:// or unix:// URL")
		}
		if len(c.RedisClusterAddrs) > 0 {
			bad("REDIS_CLUSTER_ADDRS", "set either REDIS_URL or REDIS_CLUSTER_ADDRS, not both")
		}
	}
	if !c.UsesEmbeddedStore() && len(c.EncryptionKeys) == 0 {
		bad("ENCRYPTION_KEY", "is required with an external Redis: 32 random bytes, base64 (openssl rand -base64 32)")
	}
	if c.RedisKeyPrefix == "" || strings.ContainsAny(c.RedisKeyPrefix, "{} \t\r\n") {
		bad("REDIS_KEY_PREFIX", "must be non-empty without braces or spaces")
	}

	for i, h := range c.CRMAllowedHosts {
		if _, isIP := verify.ParseHostIP(h); !isIP && !hostRe.MatchString(h) {
			bad("CRM_ALLOWED_HOSTS", "item #%d is neither a host name suffix (retailcrm.ru) nor an IP address (127.0.0.1)", i+1)
		}
	}
	if c.CRMTimeout <= 0 {
		bad("CRM_TIMEOUT", "must be a positive duration, e.g. 10s")
	}
	for _, u := range c.CRMDomainsURLs {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			bad("CRM_DOMAINS_URL", "must be http(s) URLs, e.g. https://infra-data.retailcrm.tech/crm-domains.json")
		}
	}
	if len(c.CRMDomainsURLs) > 0 && c.CRMDomainsRefresh < time.Minute {
		bad("CRM_DOMAINS_REFRESH", "must be at least 1m")
	}
	for _, p := range c.CRMAllowedPorts {
		if p == 0 {
			bad("CRM_ALLOWED_PORTS", "ports must be 1-65535")
		}
	}
	if c.FailedRequestsPerMinute < 0 {
		bad("FAILED_REQUESTS_PER_MINUTE", "must be 0 (off) or more")
	}
	if c.ShopKeyAttemptsPerMinute < 0 {
		bad("SHOP_KEY_ATTEMPTS_PER_MINUTE", "must be 0 (off) or more")
	}
	for i, cidr := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			bad("TRUSTED_PROXIES", "item #%d is not a CIDR such as 10.0.0.0/8", i+1)
		}
	}
	if c.RedisSentinelMaster != "" && len(c.RedisSentinelAddrs) == 0 {
		bad("REDIS_SENTINEL_ADDRS", "is required with REDIS_SENTINEL_MASTER")
	}
	if len(c.RedisSentinelAddrs) > 0 && c.RedisSentinelMaster == "" {
		bad("REDIS_SENTINEL_MASTER", "is required with REDIS_SENTINEL_ADDRS")
	}
	if c.RedisSentinelMaster != "" && (!c.RedisURL.IsZero() || len(c.RedisClusterAddrs) > 0) {
		bad("REDIS_SENTINEL_MASTER", "set only one of REDIS_URL, REDIS_CLUSTER_ADDRS or REDIS_SENTINEL_MASTER")
	}
	if c.SessionTTL < time.Minute {
		bad("SESSION_TTL", "must be at least 1m")
	}
	if c.ShutdownTimeout <= 0 {
		bad("SHUTDOWN_TIMEOUT", "must be a positive duration")
	}
	if c.ModuleAppURL != "" {
		if u, err := url.Parse(c.ModuleAppURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" || u.User != nil {
			bad("MODULE_APP_URL", "must be an absolute http(s) URL without a fragment or user")
		} else if !cspHost.MatchString(u.Host) {
			// Its origin goes into the account page's CSP (form-action): a
			// host CSP cannot name (an IPv6 literal, an IDN not in
			// punycode) would leave the "Open" button blocked, and one
			// with a ';' would add a directive.
			bad("MODULE_APP_URL", "its host must be a DNS name or IPv4 address (letters, digits, '-' and '.'; an IDN in punycode), optionally with a port")
		}
	}
	if c.KeyCheckInterval < 0 || c.KeyCheckInterval > 0 && c.KeyCheckInterval < time.Second {
		bad("KEY_CHECK_INTERVAL", "must be 0 (off) or at least 1s")
	}
	for i, t := range c.AdminTokens {
		if len(t.Reveal()) < 16 {
			bad("ADMIN_TOKEN", "token #%d is shorter than 16 characters", i+1)
		}
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("LOG_FORMAT", "must be text or json")
	}
	errs = append(errs, c.validateServiceAPI()...)
	return errors.Join(errs...)
}

// UsesEmbeddedStore reports whether no external Redis is configured.
func (c Config) UsesEmbeddedStore() bool {
	return c.RedisURL.IsZero() && len(c.RedisClusterAddrs) == 0 && c.RedisSentinelMaster == ""
}

// PublicURLFor returns the absolute public URL of a path of this service.
func (c Config) PublicURLFor(path string) string {
	return strings.TrimSuffix(c.PublicURL, "/") + path
}

// SecureCookies reports whether cookies must carry the Secure flag.
func (c Config) SecureCookies() bool { return strings.HasPrefix(c.PublicURL, "https://") }

// EncryptionKeys are AES-256 keys, the first one current. The environment
// holds them as a comma-separated list of base64 strings.
type EncryptionKeys [][]byte

// Decode implements envconfig.Decoder through splitList, like every list.
// Its errors never quote the value.
func (k *EncryptionKeys) Decode(value string) error {
	keys, err := decodeKeys(value, "want 32")
	*k = keys
	return err
}

// decodeKeys reads a list of base64 32-byte keys (ENCRYPTION_KEY,
// TOKEN_SIGNING_KEY); want ends the message for a key of another length.
// Its errors never quote the value.
func decodeKeys(value, want string) ([][]byte, error) {
	parts, err := splitList(value) // the one list parser: trimmed, no empty item
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	for i, part := range parts {
		b, err := base64.StdEncoding.DecodeString(part)
		if err != nil {
			b, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(part, "="))
		}
		if err != nil {
			return nil, safeError(fmt.Sprintf("key #%d is not base64", i+1))
		}
		if len(b) != 32 {
			return nil, safeError(fmt.Sprintf("key #%d is %d bytes, %s", i+1, len(b), want))
		}
		keys = append(keys, b)
	}
	return keys, nil
}

// String, Format, LogValue and MarshalJSON keep the keys out of any printed
// Config. MarshalJSON matters most: slog's JSON handler encodes a Config
// attribute with encoding/json, which never asks a field for its LogValue,
// and would print [][]byte as base64 (the very form of ENCRYPTION_KEY).
func (k EncryptionKeys) String() string               { return fmt.Sprintf("[%d redacted keys]", len(k)) }
func (k EncryptionKeys) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(k.String())) }
func (k EncryptionKeys) LogValue() slog.Value         { return slog.StringValue(k.String()) }
func (k EncryptionKeys) MarshalJSON() ([]byte, error) { return json.Marshal(k.String()) }

// cspHost is a host[:port] a CSP source expression can name.
var cspHost = regexp.MustCompile(`^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?(:[0-9]{1,5})?$`)

// ModuleAppOrigin is MODULE_APP_URL's origin (scheme://host[:port], no
// path), for the account page's CSP; empty when MODULE_APP_URL is.
func (c Config) ModuleAppOrigin() string {
	if c.ModuleAppURL == "" {
		return ""
	}
	u, err := url.Parse(c.ModuleAppURL)
	if err != nil { // Validate refused it already
		return ""
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
}

// LogoURL is the logo sent to the CRM and shown on the account page: the
// configured one, else the service's own.
func (c Config) LogoURL() string {
	if c.ModuleLogoURL != "" {
		return c.ModuleLogoURL
	}
	return c.PublicURLFor("/static/logo.svg")
}

// AllowedPortStrings are CRMAllowedPorts as text, for address checks.
func (c Config) AllowedPortStrings() []string {
	out := make([]string, 0, len(c.CRMAllowedPorts))
	for _, p := range c.CRMAllowedPorts {
		out = append(out, strconv.Itoa(int(p)))
	}
	return out
}
