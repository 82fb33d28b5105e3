package crm

import (
	"errors"
	"strings"
	"testing"
)

// FuzzClassify: any status and body from a CRM (or from whatever answers
// at a shop's address) decodes without panicking into success or exactly
// one kind of failure, and the API key never survives into the error.
func FuzzClassify(f *testing.F) {
	f.Add(200, `{"success":true,"info":[]}`)
	f.Add(200, `{"success":true,"info":{"billingInfo":{"price":1}}}`)
	f.Add(400, `{"success":false,"errorMsg":"Errors in the entity format","errors":{"code":"blank"}}`)
	f.Add(400, `{"success":false,"errors":["a","b",["c"]]}`)
	f.Add(403, `{"success":false,"errorMsg":"Wrong \"apiKey\" value. fuzz-key"}`)
	f.Add(503, `<html>busy</html>`)
	f.Add(404, "<!DOCTYPE html>")
	f.Add(201, `{"success":"yes"}`)
	f.Add(0, ``)
	kinds := []error{ErrValidation, ErrUnauthorized, ErrPaymentRequired, ErrForbidden, ErrMethodNotFound,
		ErrRateLimited, ErrUnavailable, ErrNoAccount, ErrBlocked, ErrUnexpected}
	f.Fuzz(func(t *testing.T, status int, body string) {
		const key = "fuzz-key"
		var out editReply
		err := classify("edit", status, []byte(body), &out, key)
		if err == nil {
			if status < 200 || status > 299 {
				t.Fatalf("status %d taken as success", status)
			}
			return
		}
		matched := 0
		for _, k := range kinds {
			if errors.Is(err, k) {
				matched++
			}
		}
		if matched != 1 {
			t.Fatalf("error %v matches %d kinds, want exactly 1", err, matched)
		}
		if strings.Contains(err.Error(), key) {
			t.Fatalf("API key in error: %v", err)
		}
		var ce *Error
		if errors.As(err, &ce) && strings.Contains(ce.Reason(), key) {
			t.Fatalf("API key in reason: %q", ce.Reason())
		}
	})
}
