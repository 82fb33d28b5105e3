package store

import (
	"crypto/sha256"
	"encoding/hex"
)

// keys builds every Redis key name of the store. All of them carry the hash
// tag {prefix}: in a Cluster they live in one slot, so one MULTI/EXEC can
// touch an account, its indexes and the event stream together. One module's
// accounts fit one node with ease (see BENCHMARKS.md for bytes per
// account); Cluster and Sentinel give it failover.
//
// No key name holds a secret: the clientId and session ids appear only as
// SHA-256 digests.
type keys struct{ tag string }

func newKeys(prefix string) keys { return keys{tag: "{" + prefix + "}"} }

func (k keys) account(id string) string        { return k.tag + ":acct:" + id }
func (k keys) shop(systemURL string) string    { return k.tag + ":shop:" + systemURL }
func (k keys) client(clientID string) string   { return k.tag + ":client:" + digest(clientID) }
func (k keys) index(s Status) string           { return k.tag + ":idx:" + string(s) }
func (k keys) all() string                     { return k.tag + ":idx:all" }
func (k keys) inflight() string                { return k.tag + ":inflight" }
func (k keys) session(sessionID string) string { return k.tag + ":sess:" + digest(sessionID) }
func (k keys) draft(sessionID string) string   { return k.tag + ":draft:" + digest(sessionID) }
func (k keys) events() string                  { return k.tag + ":events" }
func (k keys) lease(id string) string          { return k.tag + ":lease:" + id }
func (k keys) sealedIDs() string               { return k.tag + ":sealed" }
func (k keys) sealedBy(keyID string) string    { return k.tag + ":sealed:" + keyID }
func (k keys) meta() string                    { return k.tag + ":meta" }
func (k keys) keyCheck() string                { return k.tag + ":keycheck" }
func (k keys) pattern() string                 { return k.tag + ":*" }

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
