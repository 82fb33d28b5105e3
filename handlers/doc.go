// Package handlers is the service's HTTP surface (echo v4): the CRM's
// webhooks (/config, /register, /activity), the shop owner's account page,
// health, metrics and the admin API.
//
// Every route is listed in routes.go. Handlers return errors; the one error
// handler in errors.go turns them into the reply each caller expects: HTTP
// 200 with {"success":false,"errorMsg":...} for the CRM's webhooks, a JSON
// problem for the admin API, an HTML page for browsers. errors.go maps
// every failure to its reply; the wording is in the i18n catalogs (the
// module card's in the shop's language). limits.go says what is limited,
// and why not the caller.
package handlers
