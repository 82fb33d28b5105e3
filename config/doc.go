// Package config reads the service's settings from environment variables
// (envconfig) and validates them, reporting one line per bad variable that
// names the variable and never quotes its value (it may be a secret).
//
// Every rule lives in Validate, so a Config written as a Go literal in a test
// gets the same checks as one loaded from the environment.
package config
