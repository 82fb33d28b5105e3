// Package redact is the one place that keeps credentials out of logs,
// errors, replies and metric labels.
//
// Values that are credentials (a shop's CRM API key, a module secret, the
// register token, a clientId, a session id) travel as Secret: every way of
// printing one (fmt verbs, slog, JSON) writes "[redacted]", and Reveal is the
// single, grep-able way to get the value for the one place that needs it.
// ReplaceAttr backs this up for plain strings logged under a sensitive key.
package redact
