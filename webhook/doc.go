// Package webhook reads the forms the CRM posts to the service (spec §2 and
// §5): a register (one field "register" holding a JSON object, or the
// bracket form) and an activity callback, into bounded requests; anything
// else is ErrBadRequest. It depends on nothing but redact, so its fuzz
// targets build in seconds.
package webhook
