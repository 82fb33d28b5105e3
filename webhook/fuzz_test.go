package webhook_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/modulehub/simpleconnect/webhook"
)

// FuzzParseRegister: any body either parses into a bounded request or is
// refused; nothing panics.
func FuzzParseRegister(f *testing.F) {
	f.Add(`register={"apiKey":"k","systemUrl":"https://shop.retailcrm.ru","token":"abc"}`)
	f.Add(`register[apiKey]=k&register[systemUrl]=https://shop.retailcrm.ru&register[token]=abc`)
	f.Add(`register=[]`)
	f.Add(`register={"apiKey":1}`)
	f.Add(`register={"apiKey":"k"}{}`)
	f.Add(`register=%zz`)
	f.Fuzz(func(t *testing.T, body string) {
		form, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		req, err := webhook.ParseRegister(form)
		if err != nil {
			return
		}
		if req.APIKey.IsZero() || req.SystemURL == "" {
			t.Fatalf("accepted a register without apiKey or systemUrl: %q", body)
		}
		if len(req.APIKey.Reveal()) > 256 || len(req.SystemURL) > 2048 || len(req.Token.Reveal()) > 128 {
			t.Fatalf("accepted oversized fields: %q", body)
		}
		if strings.TrimSpace(req.SystemURL) != req.SystemURL {
			t.Fatalf("systemUrl not trimmed: %q", req.SystemURL)
		}
	})
}

// FuzzParseActivity: the activity callback never panics and never accepts
// a callback without clientId or an "active" flag (encoding/json matches
// field names without regard to case, so "ACtive" counts).
func FuzzParseActivity(f *testing.F) {
	f.Add("abc", "https://shop.retailcrm.ru", `{"active":true,"freeze":false}`)
	f.Add("", "", "")
	f.Add("abc", "", `{"freeze":true}`)
	f.Fuzz(func(t *testing.T, clientID, systemURL, activity string) {
		req, err := webhook.ParseActivity(url.Values{"clientId": {clientID}, "systemUrl": {systemURL}, "activity": {activity}})
		if err != nil {
			return
		}
		if req.ClientID.IsZero() || !strings.Contains(strings.ToLower(activity), "active") {
			t.Fatalf("accepted an incomplete callback: %q %q", clientID, activity)
		}
	})
}
