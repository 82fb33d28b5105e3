// Package domains keeps the CRM's published lists of account domains
// (RetailCRM publishes https://infra-data.retailcrm.tech/crm-domains.json
// for SaaS accounts and box-domains.json for on-premise ones) fresh in the
// background, so that a shop on a new white-label domain can connect
// without a redeploy.
//
// A refresh that fails, times out or returns nothing usable keeps the last
// good list; reading the list never waits for a refresh.
package domains
