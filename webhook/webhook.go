package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/modulehub/simpleconnect/redact"
)

// ErrBadRequest means a webhook's form could not be read: the CRM's reply
// shape is {"success":false,...} with a message asking to connect again.
var ErrBadRequest = errors.New("request could not be read")

// RegisterRequest is the CRM's register call (spec §2).
type RegisterRequest struct {
	APIKey    redact.Secret
	SystemURL string
	Token     redact.Secret
}

// Limits on register fields: far above what the CRM sends, far below what
// could hurt.
const (
	MaxAPIKeyLen    = 256
	MaxSystemURLLen = 2048
	MaxTokenLen     = 128
)

// ParseRegister reads a register form: one field "register" holding a JSON
// object, or the bracket form register[apiKey]=…&register[systemUrl]=…&register[token]=….
func ParseRegister(form url.Values) (RegisterRequest, error) {
	var in struct {
		APIKey    string `json:"apiKey"`
		SystemURL string `json:"systemUrl"`
		Token     string `json:"token"`
	}
	if raw, ok := form["register"]; ok {
		if len(raw) != 1 {
			return RegisterRequest{}, fmt.Errorf("%w: register given %d times", ErrBadRequest, len(raw))
		}
		dec := json.NewDecoder(strings.NewReader(raw[0]))
		if err := dec.Decode(&in); err != nil {
			return RegisterRequest{}, fmt.Errorf("%w: register is not a JSON object", ErrBadRequest)
		}
		if dec.More() {
			return RegisterRequest{}, fmt.Errorf("%w: trailing data after register JSON", ErrBadRequest)
		}
	} else {
		in.APIKey = form.Get("register[apiKey]")
		in.SystemURL = form.Get("register[systemUrl]")
		in.Token = form.Get("register[token]")
	}
	in.APIKey, in.SystemURL, in.Token = strings.TrimSpace(in.APIKey), strings.TrimSpace(in.SystemURL), strings.TrimSpace(in.Token)
	switch {
	case in.APIKey == "" && in.SystemURL == "" && in.Token == "":
		return RegisterRequest{}, fmt.Errorf("%w: no register data", ErrBadRequest)
	case in.APIKey == "" || len(in.APIKey) > MaxAPIKeyLen:
		return RegisterRequest{}, fmt.Errorf("%w: apiKey missing or too long", ErrBadRequest)
	case in.SystemURL == "" || len(in.SystemURL) > MaxSystemURLLen:
		return RegisterRequest{}, fmt.Errorf("%w: systemUrl missing or too long", ErrBadRequest)
	case len(in.Token) > MaxTokenLen:
		return RegisterRequest{}, fmt.Errorf("%w: token too long", ErrBadRequest)
	}
	return RegisterRequest{APIKey: redact.Secret(in.APIKey), SystemURL: in.SystemURL, Token: redact.Secret(in.Token)}, nil
}

// ActivityRequest is the CRM's activity callback (spec §5).
type ActivityRequest struct {
	ClientID  redact.Secret
	SystemURL string
	Active    bool
	Freeze    bool
}

// ParseActivity reads the activity callback's form.
func ParseActivity(form map[string][]string) (ActivityRequest, error) {
	get := func(k string) string {
		if v := form[k]; len(v) > 0 {
			return strings.TrimSpace(v[0])
		}
		return ""
	}
	req := ActivityRequest{ClientID: redact.Secret(get("clientId")), SystemURL: get("systemUrl")}
	if req.ClientID.IsZero() || len(req.ClientID.Reveal()) > 256 {
		return ActivityRequest{}, fmt.Errorf("%w: clientId missing or too long", ErrBadRequest)
	}
	if len(req.SystemURL) > MaxSystemURLLen {
		return ActivityRequest{}, fmt.Errorf("%w: systemUrl too long", ErrBadRequest)
	}
	var activity struct {
		Active *bool `json:"active"`
		Freeze bool  `json:"freeze"`
	}
	if err := json.Unmarshal([]byte(get("activity")), &activity); err != nil || activity.Active == nil {
		return ActivityRequest{}, fmt.Errorf("%w: activity is not {\"active\":…,\"freeze\":…}", ErrBadRequest)
	}
	req.Active, req.Freeze = *activity.Active, activity.Freeze
	return req, nil
}
