// Package handlers is the service's HTTP surface (echo v4): the CRM's
// webhooks (/config, /register, /activity), the shop owner's account page,
// health, metrics and the admin API.
//
// Every route is listed in routes.go. Handlers return errors; the one error
// handler in errors.go turns them into the reply each caller expects: HTTP
// 200 with {"success":false,"errorMsg":...} for the CRM's webhooks, a JSON
// problem for the admin API, an HTML page for browsers. errors.go holds the
// only user-facing wording of failures.
package handlers
