package redact_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modulehub/simpleconnect/redact"
)

// value is what the tests hide; leaks checks every way it could show.
const value = "crm-api-key-7f3a9c"

// leaks reports whether out shows the value: as is, hex-encoded, or as the
// bytes %d and %v print for a []byte.
func leaks(out string) bool {
	return strings.Contains(out, value) ||
		strings.Contains(out, fmt.Sprintf("%x", value)) ||
		strings.Contains(out, fmt.Sprintf("%X", value)) ||
		strings.Contains(out, "7f3a9c") ||
		strings.Contains(out, fmt.Sprint([]byte(value))[1:20])
}

func TestSecretRevealReturnsTheValue(t *testing.T) {
	s := redact.Secret(value)
	assert.Equal(t, value, s.Reveal())
	assert.False(t, s.IsZero())
	assert.True(t, redact.Secret("").IsZero())
}

func TestSecretHiddenFromEveryFmtVerb(t *testing.T) {
	s := redact.Secret(value)
	holder := struct {
		Name   string
		APIKey redact.Secret
		Keys   []redact.Secret
		Ptr    *redact.Secret
	}{"shop", s, []redact.Secret{s, s}, &s}

	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s", "%-20v", "%T %v"}
	for _, verb := range verbs {
		for name, arg := range map[string]any{"value": s, "pointer": &s, "struct": holder, "slice": []redact.Secret{s}, "map": map[string]redact.Secret{"k": s}} {
			t.Run(verb+" "+name, func(t *testing.T) {
				out := fmt.Sprintf(verb, arg)
				if strings.HasPrefix(verb, "%T") {
					out = fmt.Sprintf(verb, arg, arg)
				}
				assert.False(t, leaks(out), "%s of a %s shows the value: %s", verb, name, out)
			})
		}
	}
	assert.Equal(t, redact.Placeholder, fmt.Sprintf("%v", s))
	assert.Equal(t, redact.Placeholder, fmt.Sprint(s))
	assert.Equal(t, redact.Placeholder, s.String())
	assert.Equal(t, redact.Placeholder, s.GoString())
	assert.Equal(t, redact.Placeholder, fmt.Sprintf("%q", s), "%q writes the placeholder unquoted: it is not the value")
	assert.Contains(t, fmt.Sprintf("%+v", holder), "shop", "the rest of a struct still prints")
	assert.False(t, leaks(fmt.Sprintln(s, &s, holder)))
}

func TestSecretHiddenFromErrors(t *testing.T) {
	s := redact.Secret(value)
	errs := []error{
		fmt.Errorf("register %v: %w", s, errors.New("refused")),
		fmt.Errorf("register %s", s),
		fmt.Errorf("register %q", s),
		fmt.Errorf("register %+v", struct{ Key redact.Secret }{s}),
		fmt.Errorf("wrapped: %w", fmt.Errorf("inner %v", s)),
	}
	for _, err := range errs {
		assert.False(t, leaks(err.Error()), "error shows the value: %s", err)
		assert.False(t, leaks(fmt.Sprintf("%+v", err)))
	}
}

func TestSecretHiddenFromJSONAndXML(t *testing.T) {
	s := redact.Secret(value)
	type reply struct {
		Success bool            `json:"success"`
		APIKey  redact.Secret   `json:"apiKey" xml:"apiKey"`
		Keys    []redact.Secret `json:"keys" xml:"keys"`
		Ptr     *redact.Secret  `json:"ptr" xml:"ptr"`
		ByKey   map[string]redact.Secret
	}
	r := reply{Success: true, APIKey: s, Keys: []redact.Secret{s}, Ptr: &s, ByKey: map[string]redact.Secret{"a": s}}

	b, err := json.Marshal(r)
	require.NoError(t, err)
	assert.False(t, leaks(string(b)), "json: %s", b)
	assert.JSONEq(t, `{"success":true,"apiKey":"[redacted]","keys":["[redacted]"],"ptr":"[redacted]","ByKey":{"a":"[redacted]"}}`, string(b))

	b, err = json.MarshalIndent(s, "", " ")
	require.NoError(t, err)
	assert.Equal(t, `"[redacted]"`, string(b))

	b, err = xml.Marshal(struct {
		XMLName xml.Name      `xml:"r"`
		APIKey  redact.Secret `xml:"apiKey"`
	}{APIKey: s})
	require.NoError(t, err)
	assert.False(t, leaks(string(b)), "xml: %s", b)
}

func TestSecretHiddenFromSlog(t *testing.T) {
	s := redact.Secret(value)
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			var h slog.Handler
			if format == "json" {
				h = slog.NewJSONHandler(&buf, nil) // no ReplaceAttr: the type alone must hold
			} else {
				h = slog.NewTextHandler(&buf, nil)
			}
			log := slog.New(h).With("shop", s)
			log.Info("register", "key", s, "ptr", &s, slog.Any("any", s), "keys", []redact.Secret{s})
			log.Info("struct", "req", struct {
				URL    string
				APIKey redact.Secret
			}{"https://shop.retailcrm.ru", s})
			log.WithGroup("crm").Info("group", "key", s)
			log.Error("failed", "err", fmt.Errorf("edit %v: refused", s))
			out := buf.String()
			assert.False(t, leaks(out), "slog %s shows the value:\n%s", format, out)
			assert.Contains(t, out, redact.Placeholder)
			assert.Contains(t, out, "https://shop.retailcrm.ru")
		})
	}
}

func TestIsSensitiveKey(t *testing.T) {
	for _, k := range []string{
		"apiKey", "APIKEY", "api_key", "x-api-key", "X-API-KEY", "token", "Token", "clientId", "client_id",
		"cookie", "Cookie", "set-cookie", "Authorization", "authorization", "password", "secret",
		"session", "register", "crm.apiKey", "req.token", "admin_token", "module_secret",
	} {
		assert.True(t, redact.IsSensitiveKey(k), k)
	}
	for _, k := range []string{"route", "status", "method", "duration", "request_id", "systemUrl", "code", "err", "msg"} {
		assert.False(t, redact.IsSensitiveKey(k), k)
	}
}

// ReplaceAttr is the second line of defence: a plain string logged under a
// sensitive key is redacted in both handlers; other keys pass untouched.
func TestReplaceAttrRedactsSensitiveKeys(t *testing.T) {
	sensitive := []string{"apiKey", "token", "clientId", "cookie", "x-api-key", "Authorization", "api_key", "session", "password"}
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			opts := &slog.HandlerOptions{ReplaceAttr: redact.ReplaceAttr}
			var h slog.Handler
			if format == "json" {
				h = slog.NewJSONHandler(&buf, opts)
			} else {
				h = slog.NewTextHandler(&buf, opts)
			}
			log := slog.New(h)
			args := []any{"route", "/register", "status", 200}
			for _, k := range sensitive {
				args = append(args, k, value)
			}
			log.Info("request", args...)
			log.WithGroup("req").Info("grouped", "token", value, "route", "/activity")
			log.Info("bytes", "cookie", []byte(value), "Authorization", "Bearer "+value)

			out := buf.String()
			assert.False(t, leaks(out), "ReplaceAttr let the value through:\n%s", out)
			assert.Contains(t, out, "/register", "route is left alone")
			assert.Contains(t, out, "/activity", "route in a group is left alone")
			assert.Contains(t, out, "200", "status is left alone")
			assert.Contains(t, out, "request", "the message is left alone")
			for _, k := range sensitive {
				assert.Contains(t, out, k, "the key itself still shows")
			}
		})
	}
}

func TestReplaceAttrDirect(t *testing.T) {
	got := redact.ReplaceAttr(nil, slog.String("clientId", value))
	assert.Equal(t, "clientId", got.Key)
	assert.Equal(t, redact.Placeholder, got.Value.String())

	route := slog.String("route", "/register")
	assert.Equal(t, route, redact.ReplaceAttr(nil, route))
	status := slog.Int("status", 503)
	assert.Equal(t, status, redact.ReplaceAttr(nil, status))
}

func BenchmarkIsSensitiveKey(b *testing.B) {
	keys := []string{"time", "level", "msg", "method", "route", "status", "duration_ms", "request_id", "account_id", "outcome", "X-Api-Key", "shop_api_key"}
	b.ReportAllocs()
	for b.Loop() {
		for _, k := range keys {
			redact.IsSensitiveKey(k)
		}
	}
}
