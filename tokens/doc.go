// Package tokens issues and verifies the short-lived signed tokens that
// tell the module's own apps which shop is calling: compact JWS (EdDSA,
// Ed25519), claims iss (the service's PUBLIC_URL), aud (MODULE_CODE), sub
// (the account id), system_url, iat, nbf, exp and jti; never an API key or
// a clientId. The service signs with the first configured key and
// publishes every key as a JWKS (rotation); the module's workers verify
// with Verifier, which fetches and caches the JWKS for as long as the
// reply's Cache-Control allows (5 minutes by default, 15 at most), and
// refreshes it when it expires or a token names a key it does not know: a
// key dropped from the JWKS stops verifying once the cached set expires.
//
// JOSE is github.com/go-jose/go-jose/v4: small, maintained, no global
// state, with EdDSA and JWK sets built in (golang-jwt has no JWKS; jwx is
// far larger for what is used here). This package depends on nothing else
// of the service, so workers import it alone.
package tokens
