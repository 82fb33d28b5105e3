// Package crm talks to a shop's RetailCRM / Simla.com API: the module edit
// call that registers the module in the shop's CRM, and the credentials
// call that tells what an API key may do.
//
// It owns the CRM's quirks (info as object or [], errors as array or map,
// HTML pages for unknown accounts), maps replies to sentinel errors, retries
// only what is worth retrying within one overall deadline, follows no
// redirects, and dials only public addresses (the ssrf guard checks every
// resolved IP at dial time). Owner-readable wording lives in handlers.
package crm
