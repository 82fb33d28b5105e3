package main

import (
	"encoding/json"
	"errors"
	"net/http"

	retailcrm "github.com/retailcrm/api-client-go/v2"
)

// editModule registers the module in the shop's CRM with a client made for
// this call, as api-client-go's README shows (retailcrm.New per shop; its
// http.Client uses the default transport, so connections are still pooled
// per host).
//
// The "info":[] workaround: on some accounts the CRM answers a successful
// edit with "info":[] instead of an object, and IntegrationModuleEdit
// (v2.1.17) then returns the json.UnmarshalTypeError of decoding [] into
// its ResponseInfo struct, although the module is registered. A 2xx whose
// only fault is that type error is a success.
func editModule(systemURL, apiKey string, m retailcrm.IntegrationModule) error {
	_, status, err := retailcrm.New(systemURL, apiKey).IntegrationModuleEdit(m)
	var typeErr *json.UnmarshalTypeError
	if err != nil && status >= http.StatusOK && status < http.StatusMultipleChoices && errors.As(err, &typeErr) {
		return nil
	}
	return err
}
