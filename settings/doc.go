// Package settings owns the module's connection variables: the schema a
// module developer declares in the JSON file named by MODULE_SETTINGS_FILE
// (name, label and help per language, type text / secret / select /
// checkbox, required, default, pattern, options, and the message and
// example that explain a pattern), its validation at start (a pattern
// the page cannot word itself, see Digits.Worded, must come with a
// message),
// and the server-side check of what a shop owner submits on the account
// page.
//
// It does no I/O beyond reading that one file and knows nothing of HTTP,
// languages' message catalogs or storage: handlers render the form and
// word the problems, store seals the values at rest.
package settings
