// Package crmtest is a fake RetailCRM / Simla.com API for tests and for the
// marketplace simulator (cmd/crmsim).
//
// A Fake serves the endpoints the service calls (the module edit and
// /api/credentials), checks requests the way the CRM does (API key header,
// integrationModule form field, module code), answers from a script kept per
// API key, and records every call so tests can assert what was sent.
// Recorded CRM request/response pairs from testdata/crm replay through it.
package crmtest
