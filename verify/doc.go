// Package verify decides whether a register call may be acted on: the HMAC
// token against every configured secret, in constant time, and the shop's
// address (systemUrl) against the allow-list, in one canonical form.
//
// It does no network I/O: the dial-time address guard lives in crm's
// transport, because only a dial knows the address a name resolves to.
package verify
