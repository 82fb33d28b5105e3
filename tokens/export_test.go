package tokens

// SetOnWait makes v call fn whenever a verification starts waiting for a
// JWKS fetch (its own or one under way): tests learn that a waiter is
// parked without sleeping.
func SetOnWait(v *Verifier, fn func()) { v.onWait = fn }
