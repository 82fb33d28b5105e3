package config

import (
	"crypto/subtle"
	"fmt"
)

// DefaultCRMRatePerSecond is CRM_RATE_PER_SECOND's default: the CRM allows
// about ten requests per second per account.
const DefaultCRMRatePerSecond = 10

// validateServiceAPI checks SERVICE_TOKEN and CRM_RATE_PER_SECOND. A token
// listed in both ADMIN_TOKEN and SERVICE_TOKEN stops the start: a service
// token must never open the admin API, nor an admin token the service
// API, and one string in both lists would be both. Errors name tokens by
// their place in the list, never by value.
func (c Config) validateServiceAPI() []error {
	var errs []error
	for i, t := range c.ServiceTokens {
		if len(t.Reveal()) < 16 {
			errs = append(errs, fmt.Errorf("config: SERVICE_TOKEN: token #%d is shorter than 16 characters", i+1))
		}
		for j, a := range c.AdminTokens {
			if subtle.ConstantTimeCompare([]byte(t.Reveal()), []byte(a.Reveal())) == 1 {
				errs = append(errs, fmt.Errorf("config: SERVICE_TOKEN: token #%d is also ADMIN_TOKEN #%d: the two APIs need tokens of their own", i+1, j+1))
			}
		}
	}
	if c.CRMRatePerSecond < 1 {
		errs = append(errs, fmt.Errorf("config: CRM_RATE_PER_SECOND: must be at least 1 (the CRM allows about %d per account)", DefaultCRMRatePerSecond))
	}
	return errs
}
