package crm

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors, one per kind of CRM reply. *Error wraps one of them.
var (
	ErrValidation      = errors.New("crm: request rejected as invalid (400)")
	ErrUnauthorized    = errors.New("crm: API key missing or unknown (401)")
	ErrPaymentRequired = errors.New("crm: account has insufficient funds (402)")
	ErrForbidden       = errors.New("crm: API key lacks access (403)")
	ErrMethodNotFound  = errors.New("crm: API method not found (404)")
	ErrRateLimited     = errors.New("crm: rate limited (429)")
	ErrUnavailable     = errors.New("crm: unavailable (5xx, timeout or connection failure)")
	ErrNoAccount       = errors.New("crm: address is not a CRM account (HTML reply)")
	ErrBlocked         = errors.New("crm: address refused by the outbound guard")
	ErrUnexpected      = errors.New("crm: unexpected reply")
)

// Error is a failed CRM call: its kind (a sentinel above), the HTTP status
// and what the CRM said, with the API key scrubbed out.
type Error struct {
	Kind    error
	Op      string
	Status  int
	Message string   // the CRM's errorMsg
	Details []string // the CRM's errors, "field: message" for the map form
	// Transport is what went wrong when no reply came (dial, timeout,
	// redirect), for logs; it is not the CRM's explanation.
	Transport string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "crm %s: %v", e.Op, e.Kind)
	if e.Status != 0 {
		fmt.Fprintf(&b, " status=%d", e.Status)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if len(e.Details) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(e.Details, "; "))
	}
	if e.Transport != "" {
		fmt.Fprintf(&b, ": %s", e.Transport)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Kind }

// Reason is the CRM's own explanation, for the shop owner: its errorMsg and
// details, cut to a readable length. Empty when the CRM gave none.
func (e *Error) Reason() string {
	parts := []string{}
	if e.Message != "" {
		parts = append(parts, e.Message)
	}
	parts = append(parts, e.Details...)
	s := strings.Join(parts, "; ")
	const max = 300
	if r := []rune(s); len(r) > max {
		s = string(r[:max-1]) + "…"
	}
	return s
}

// kindOf maps an HTTP status of a CRM reply to its sentinel error.
func kindOf(status int) error {
	switch {
	case status == 400:
		return ErrValidation
	case status == 401:
		return ErrUnauthorized
	case status == 402:
		return ErrPaymentRequired
	case status == 403:
		return ErrForbidden
	case status == 404:
		return ErrMethodNotFound
	case status == 429:
		return ErrRateLimited
	case status >= 500:
		return ErrUnavailable
	default:
		return ErrUnexpected
	}
}
