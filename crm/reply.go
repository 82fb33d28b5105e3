package crm

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"unicode"
)

// reply is the envelope of every CRM API answer.
type reply struct {
	Success  *bool      `json:"success"`
	ErrorMsg string     `json:"errorMsg"`
	Errors   flexErrors `json:"errors"`
}

// flexErrors is the CRM's "errors": an array of strings on some endpoints,
// an object of field → message on others. Both decode to "field: message"
// lines in a stable (sorted) order.
type flexErrors []string

func (f *flexErrors) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	*f = nil
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(b, &list); err == nil {
		for _, raw := range list {
			*f = append(*f, scalarText(raw))
		}
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err == nil {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			*f = append(*f, k+": "+scalarText(m[k]))
		}
		return nil
	}
	*f = flexErrors{scalarText(b)} // a bare string or number: keep it, don't fail the reply
	return nil
}

// scalarText renders one JSON value as text: strings unquoted, nested
// arrays joined, anything else verbatim.
func scalarText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) == nil {
		parts := make([]string, 0, len(list))
		for _, r := range list {
			parts = append(parts, scalarText(r))
		}
		return strings.Join(parts, ", ")
	}
	return string(raw)
}

// Info is what the CRM says about a registered module. On most accounts it
// is an object; on some the CRM sends [] instead: both mean success.
type Info struct {
	DeliveryType json.RawMessage `json:"deliveryType,omitempty"`
	BillingInfo  json.RawMessage `json:"billingInfo,omitempty"`
}

func (i *Info) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" || b[0] == '[' {
		*i = Info{}
		return nil
	}
	type plain Info // same fields, no methods: no recursion
	return json.Unmarshal(b, (*plain)(i))
}

type editReply struct {
	reply
	Info Info `json:"info"`
}

// isHTML reports whether a body is an HTML page, which is what an address
// that is not a CRM account answers with.
func isHTML(body []byte) bool {
	b := bytes.TrimLeftFunc(body, unicode.IsSpace)
	return len(b) > 0 && b[0] == '<'
}

// clean makes text from the CRM safe to log and show: no control
// characters, no API key.
func clean(s, apiKey string) string {
	if apiKey != "" {
		s = strings.ReplaceAll(s, apiKey, "[redacted]")
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}
