package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/modulehub/simpleconnect/redact"
)

// splitList is the one reader of every comma-separated variable: each item
// is trimmed, and an empty item ("a,,b", "a, ", ",a") is an error naming
// its position, never a value (the list may hold secrets). Dropping it
// silently would hide a typo such as a secret pasted with a stray comma. A
// blank value is the empty list, as an unset variable is.
func splitList(value string) ([]string, error) {
	if strings.TrimSpace(value) == "" {
		return nil, nil
	}
	parts := strings.Split(value, ",")
	items := make([]string, 0, len(parts))
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, emptyItem(i)
		}
		items = append(items, p)
	}
	return items, nil
}

func emptyItem(i int) error { return safeError(fmt.Sprintf("item #%d is empty", i+1)) }

// checkItems is splitList's rule for a list built in Go (a Config literal
// in tests or tools, which never went through Decode): no item may be
// empty or carry spaces around it, so what Validate accepts is exactly
// what Load could have produced.
func checkItems(items []string) error {
	for i, it := range items {
		if strings.TrimSpace(it) == "" {
			return emptyItem(i)
		}
		if strings.TrimSpace(it) != it {
			return safeError(fmt.Sprintf("item #%d has spaces around it", i+1))
		}
	}
	return nil
}

// List is a comma-separated variable of plain items.
type List []string

// Decode implements envconfig.Decoder through splitList.
func (l *List) Decode(value string) error {
	items, err := splitList(value)
	*l = items
	return err
}

// SecretList is a comma-separated variable of credentials (module secrets,
// admin tokens): read like any list, every item a redact.Secret.
type SecretList []redact.Secret

// Decode implements envconfig.Decoder through splitList.
func (l *SecretList) Decode(value string) error {
	items, err := splitList(value)
	*l = nil
	for _, it := range items {
		*l = append(*l, redact.Secret(it))
	}
	return err
}

func (l SecretList) strings() []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = s.Reveal()
	}
	return out
}

// PortList is a comma-separated variable of TCP ports.
type PortList []uint16

// Decode implements envconfig.Decoder through splitList. Ports are not
// secrets, but the error still names the item by position only, as every
// list error does.
func (l *PortList) Decode(value string) error {
	items, err := splitList(value)
	*l = nil
	if err != nil {
		return err
	}
	for i, it := range items {
		n, err := strconv.ParseUint(it, 10, 16)
		if err != nil || n == 0 {
			return safeError(fmt.Sprintf("item #%d is not a port (1-65535)", i+1))
		}
		*l = append(*l, uint16(n))
	}
	return nil
}
