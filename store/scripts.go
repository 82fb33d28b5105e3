package store

import "github.com/redis/go-redis/v9"

// Every change to an account is one Lua script: atomic, one round trip,
// and never refused because another writer got there first (no WATCH to
// retry). All keys share the hash tag, so in a Cluster a script's keys are
// in one slot; KEYS[1] routes the call, the other names are built from the
// tag inside the script.
//
// ARGV[1..5] are common to every script (see Redis.common): the key tag,
// the clock in unix ms, the same time as RFC 3339 for events, the event
// stream's length bound, and when the sweeper should look again at what is
// left unfinished. Script arguments follow from ARGV[6].
//
// The lease (prelude's lease_* functions) is one string per account,
// "token|until-ms": whoever holds it is the only one talking to that
// shop's CRM. Its expiry is judged by the caller's clock, so a crashed
// holder's lease frees itself; PX is only a backstop against litter.
const prelude = `
local TAG, NOWS, AT, MAXEV, RETRY = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local NOW = tonumber(NOWS)

local function num(k, f) return tonumber(redis.call('HGET', k, f) or '0') or 0 end

local function lease_key(id) return TAG .. ':lease:' .. id end
local function lease_free(id)
  local v = redis.call('GET', lease_key(id))
  if not v then return true end
  local u = tonumber(string.match(v, '|(%d+)$'))
  return (not u) or u <= NOW
end
local function holds(id, token)
  if token == '' then return false end
  local v = redis.call('GET', lease_key(id))
  return v and string.sub(v, 1, #token + 1) == token .. '|'
end
local function take(id, token, untilms, backstop)
  redis.call('SET', lease_key(id), token .. '|' .. untilms, 'PX', backstop)
end
local function release(id, token)
  if holds(id, token) then redis.call('DEL', lease_key(id)) end
end

local function status(k)
  if redis.call('HGET', k, 'con') ~= '1' then return 'pending' end
  local kh = redis.call('HGET', k, 'kh')
  if kh and kh ~= '' then return kh end
  if redis.call('HGET', k, 'frz') == '1' then return 'frozen' end
  if redis.call('HGET', k, 'act') == '1' then return 'active' end
  return 'inactive'
end
local function reindex(id, before, after)
  if before == after then return end
  if before then redis.call('ZREM', TAG .. ':idx:' .. before, id) end
  redis.call('ZADD', TAG .. ':idx:' .. after, 0, id)
end

-- A record of format 1 gets the fields format 2 derives from it.
local function upgrade(k)
  if redis.call('HGET', k, 'v') == '2' then return end
  if redis.call('HEXISTS', k, 'wact') == 0 then redis.call('HSET', k, 'wact', redis.call('HGET', k, 'act') or '0') end
  if redis.call('HEXISTS', k, 'wfrz') == 0 then redis.call('HSET', k, 'wfrz', redis.call('HGET', k, 'frz') or '0') end
  -- A pending key of format 1 becomes attempt 1, newer than the key's (0).
  if redis.call('HEXISTS', k, 'pkey') == 1 and redis.call('HEXISTS', k, 'pseq') == 0 then redis.call('HSET', k, 'pseq', '1', 'aseq', '1') end
  redis.call('HSET', k, 'v', '2')
end

-- The CRM has the intention once it accepted its version, or when what it
-- has equals what is wanted.
local function insync(k)
  -- An edit without a clear answer may have reached the CRM after anything
  -- recorded since: until an edit is accepted, the CRM's state is unknown.
  if redis.call('HGET', k, 'unsure') == '1' then return false end
  local wv = num(k, 'wv')
  if num(k, 'sv') >= wv then return true end
  if redis.call('HGET', k, 'wact') == redis.call('HGET', k, 'act') and redis.call('HGET', k, 'wfrz') == redis.call('HGET', k, 'frz') then
    redis.call('HSET', k, 'sv', wv)
    return true
  end
  return false
end

-- Unfinished work (a pending attempt, an intention the CRM lacks) stays in
-- the sweeper's queue; finished work leaves it.
local function settle(k, id)
  local pending = redis.call('HEXISTS', k, 'pseq') == 1
  local synced = insync(k)
  if pending or not synced then
    redis.call('ZADD', TAG .. ':inflight', 'NX', RETRY, id)
  else
    redis.call('ZREM', TAG .. ':inflight', id)
    redis.call('HDEL', k, 'tries')
  end
  return synced
end

-- Which encryption keys sealed the record, read from the sealed values'
-- headers (version byte, 4-byte key id); each key id has a set of the
-- accounts it sealed, so a start can tell whether a key may go without
-- reading every account.
local SEALED = {'cid', 'key', 'pkey', 'set'}
local function rekid(k, id)
  local set, list = {}, {}
  for _, f in ipairs(SEALED) do
    local v = redis.call('HGET', k, f)
    if v and #v >= 5 then
      local kid = string.format('%02x%02x%02x%02x', string.byte(v, 2, 5))
      if not set[kid] then set[kid] = true; table.insert(list, kid) end
    end
  end
  table.sort(list)
  for _, x in ipairs(redis.call('SMEMBERS', TAG .. ':sealed')) do
    if not set[x] then redis.call('SREM', TAG .. ':sealed:' .. x, id) end
  end
  for _, x in ipairs(list) do
    redis.call('SADD', TAG .. ':sealed', x)
    redis.call('SADD', TAG .. ':sealed:' .. x, id)
  end
  redis.call('HSET', k, 'kids', table.concat(list, ','))
end

-- Fields re-sealed by the caller with the current key, each written only if
-- it still holds what the caller read: field, old, new, from ARGV[i].
local function reseal(k, i)
  local n = tonumber(ARGV[i]) or 0
  for j = 0, n - 1 do
    local f, old, new = ARGV[i + 1 + 3 * j], ARGV[i + 2 + 3 * j], ARGV[i + 3 + 3 * j]
    if redis.call('HGET', k, f) == old then redis.call('HSET', k, f, new) end
  end
  return i + 1 + 3 * n
end

-- Events from ARGV[i]: a count, then type, key_changed ("1"/"0") and the
-- previous address of each.
local function events(k, i)
  local n = tonumber(ARGV[i]) or 0
  for j = 0, n - 1 do
    local typ, kc, prev = ARGV[i + 1 + 3 * j], ARGV[i + 2 + 3 * j], ARGV[i + 3 + 3 * j]
    local v = {'type', typ, 'account_id', redis.call('HGET', k, 'id'), 'system_url', redis.call('HGET', k, 'url') or '',
      'status', status(k), 'at', AT}
    if kc == '1' then table.insert(v, 'key_changed'); table.insert(v, 'true') end
    if prev ~= '' then table.insert(v, 'previous_system_url'); table.insert(v, prev) end
    redis.call('XADD', TAG .. ':events', 'MAXLEN', '~', MAXEV, '*', unpack(v))
  end
  return i + 1 + 3 * n
end

local function emit(k, typ)
  redis.call('XADD', TAG .. ':events', 'MAXLEN', '~', MAXEV, '*', 'type', typ, 'account_id', redis.call('HGET', k, 'id'),
    'system_url', redis.call('HGET', k, 'url') or '', 'status', status(k), 'at', AT)
end

local function remove(k, id, client_key)
  local url = redis.call('HGET', k, 'url')
  for _, x in ipairs(redis.call('SMEMBERS', TAG .. ':sealed')) do redis.call('SREM', TAG .. ':sealed:' .. x, id) end
  redis.call('DEL', k, lease_key(id))
  if client_key ~= '' and redis.call('GET', client_key) == id then redis.call('DEL', client_key) end
  if url and redis.call('GET', TAG .. ':shop:' .. url) == id then redis.call('DEL', TAG .. ':shop:' .. url) end
  redis.call('ZREM', TAG .. ':idx:all', id)
  redis.call('ZREM', TAG .. ':inflight', id)
  redis.call('ZREM', TAG .. ':keycheck', id)
  for _, st in ipairs({'pending', 'active', 'inactive', 'frozen', 'key_revoked', 'scopes_missing'}) do redis.call('ZREM', TAG .. ':idx:' .. st, id) end
end
`

// scriptBegin records a connection attempt. KEYS[1]: the shop's index key.
// ARGV[6..]: candidate id, its sealed clientId, its clientId index key, the
// key sealed for the candidate, the id this replica believes owns the shop
// and the key sealed for it, the address, a lease token, its end and its
// backstop TTL. Replies {"retry", id} when the shop's owner is not the one
// the key was sealed for; else {"ok", id, seq, leased, hash}.
var scriptBegin = redis.NewScript(prelude + `
local id = redis.call('GET', KEYS[1])
local k, pkey
if not id then
  id = ARGV[6]; k = TAG .. ':acct:' .. id; pkey = ARGV[9]
  redis.call('HSET', k, 'v', '2', 'id', id, 'url', ARGV[12], 'cid', ARGV[7], 'con', '0', 'act', '0', 'frz', '0',
    'wact', '0', 'wfrz', '0', 'wv', '0', 'sv', '0', 'aseq', '0', 'edits', '0', 'cat', NOWS, 'uat', NOWS)
  redis.call('SET', KEYS[1], id)
  redis.call('SET', ARGV[8], id)
  redis.call('ZADD', TAG .. ':idx:all', 0, id)
  redis.call('ZADD', TAG .. ':idx:pending', 0, id)
else
  k = TAG .. ':acct:' .. id
  if redis.call('EXISTS', k) == 0 then
    redis.call('DEL', KEYS[1])
    return {'retry', ''}
  end
  if id ~= ARGV[10] or ARGV[11] == '' then return {'retry', id} end
  pkey = ARGV[11]
  upgrade(k)
end
local seq = redis.call('HINCRBY', k, 'aseq', 1)
local wa = redis.call('HGET', k, 'wact') or '0'
local wv = num(k, 'wv')
if wa ~= '1' then
  wv = wv + 1
  redis.call('HSET', k, 'wact', '1', 'wv', wv)
end
redis.call('HSET', k, 'pkey', pkey, 'pseq', seq, 'pat', NOWS, 'piv', wv, 'pwa', wa, 'uat', NOWS, 'tries', '0')
insync(k)
redis.call('ZADD', TAG .. ':inflight', RETRY, id)
rekid(k, id)
local got = 0
if lease_free(id) then take(id, ARGV[13], ARGV[14], ARGV[15]); got = 1 end
return {'ok', id, seq, got, redis.call('HGETALL', k)}
`)

// scriptAcquire takes an account's lease. KEYS[1]: the account. ARGV[6..]:
// token, end, backstop TTL. Replies {"ok", hash}, {"held"} or {"gone"}.
var scriptAcquire = redis.NewScript(prelude + `
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return {'gone'} end
local id = redis.call('HGET', k, 'id')
if not lease_free(id) then return {'held'} end
take(id, ARGV[6], ARGV[7], ARGV[8])
return {'ok', redis.call('HGETALL', k)}
`)

// scriptRelease gives a lease back. KEYS[1]: the lease key. ARGV[6]: token.
var scriptRelease = redis.NewScript(prelude + `
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[6] + 1) == ARGV[6] .. '|' then redis.call('DEL', KEYS[1]) end
return 1
`)

// scriptRecord records what the CRM accepted, under the lease. KEYS[1]: the
// account. ARGV[6..]: token, the state sent (act, frz), the intention
// version it came from, the address it went to, the key it proved (sealed)
// and its attempt, whether the sent state is a new intention, whether it
// answers an activity callback, whether an edit was sent, whether to
// release the lease once in sync, the lease's new end and backstop, when
// the proved key is first due for a health check ("" for never), then
// events and re-sealed fields. Replies {"ok", synced, hash}, {"lost"},
// {"taken"} (the new address has another account) or {"gone"}.
var scriptRecord = redis.NewScript(prelude + `
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return {'gone'} end
local id = redis.call('HGET', k, 'id')
local token = ARGV[6]
if not holds(id, token) then return {'lost'} end
upgrade(k)
local before = status(k)
local old_url, url = redis.call('HGET', k, 'url'), ARGV[10]
if url ~= old_url then
  local owner = redis.call('GET', TAG .. ':shop:' .. url)
  if owner and owner ~= id and redis.call('EXISTS', TAG .. ':acct:' .. owner) == 1 then return {'taken'} end
  if redis.call('GET', TAG .. ':shop:' .. old_url) == id then redis.call('DEL', TAG .. ':shop:' .. old_url) end
  redis.call('SET', TAG .. ':shop:' .. url, id)
  redis.call('HSET', k, 'url', url)
end
redis.call('HSET', k, 'act', ARGV[7], 'frz', ARGV[8], 'uat', NOWS)
if ARGV[15] == '1' then
  redis.call('HINCRBY', k, 'edits', 1)
  redis.call('HDEL', k, 'unsure')
end
local wv, seen = num(k, 'wv'), tonumber(ARGV[9])
if ARGV[13] == '1' then
  if wv == seen then
    redis.call('HSET', k, 'wact', ARGV[7], 'wfrz', ARGV[8], 'wv', wv + 1, 'sv', wv + 1)
  end
elseif seen > num(k, 'sv') then
  redis.call('HSET', k, 'sv', seen)
end
if ARGV[11] ~= '' then
  local pseq = ARGV[12]
  if redis.call('HGET', k, 'con') ~= '1' or tonumber(pseq) > num(k, 'kseq') then
    redis.call('HSET', k, 'key', ARGV[11], 'kseq', pseq)
    -- a key the CRM just accepted is healthy until a check says otherwise
    redis.call('HDEL', k, 'kh', 'kmiss')
    if ARGV[19] ~= '' then redis.call('ZADD', TAG .. ':keycheck', 'NX', ARGV[19], id) end
  end
  redis.call('HSET', k, 'con', '1', 'nat', NOWS)
  if redis.call('HGET', k, 'pseq') == pseq then
    redis.call('HDEL', k, 'pkey', 'pseq', 'pat', 'piv', 'pwa', 'tries')
  end
end
if ARGV[14] == '1' then redis.call('HSET', k, 'aat', NOWS) end
local i = events(k, 20)
reseal(k, i)
rekid(k, id)
reindex(id, before, status(k))
local synced = settle(k, id)
if synced and ARGV[16] == '1' then
  release(id, token)
else
  take(id, token, ARGV[17], ARGV[18])
end
return {'ok', synced and 1 or 0, redis.call('HGETALL', k)}
`)

// scriptAbort ends an attempt the CRM refused (or that the sweeper gave
// up), only if it is still the newest: an account never connected goes,
// a connected one keeps its key and, unless asked to keep it, gets back
// the intention it had before. KEYS[1]: the account. ARGV[6..]: attempt,
// token, the clientId index key, "1" to keep the intention.
// Replies {"deleted"}, {"aborted", hash}, {"superseded", hash}, {"lost"} or
// {"gone"}. The lease is released.
var scriptAbort = redis.NewScript(prelude + `
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return {'gone'} end
local id = redis.call('HGET', k, 'id')
local token = ARGV[7]
if not holds(id, token) then return {'lost'} end
upgrade(k)
local done = 'superseded'
if redis.call('HGET', k, 'pseq') == ARGV[6] then
  if redis.call('HGET', k, 'con') ~= '1' then
    remove(k, id, ARGV[8])
    return {'deleted'}
  end
  local back = redis.call('HGET', k, 'pwa') or redis.call('HGET', k, 'act')
  if ARGV[9] ~= '1' and num(k, 'wv') == num(k, 'piv') and back ~= redis.call('HGET', k, 'wact') then
    -- going back is an intention of its own: a new version
    redis.call('HSET', k, 'wact', back, 'wv', num(k, 'wv') + 1)
  end
  redis.call('HDEL', k, 'pkey', 'pseq', 'pat', 'piv', 'pwa', 'tries')
  redis.call('HSET', k, 'uat', NOWS)
  rekid(k, id)
  done = 'aborted'
end
settle(k, id)
release(id, token)
return {done, redis.call('HGETALL', k)}
`)

// scriptAbandon gives up bringing the CRM to an intention it keeps
// refusing or never answers: the intention becomes what the CRM has.
// KEYS[1]: the account. ARGV[6]: token. The lease is released.
var scriptAbandon = redis.NewScript(prelude + `
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return {'gone'} end
local id = redis.call('HGET', k, 'id')
if not holds(id, ARGV[6]) then return {'lost'} end
upgrade(k)
redis.call('HSET', k, 'wact', redis.call('HGET', k, 'act'), 'wfrz', redis.call('HGET', k, 'frz'), 'uat', NOWS)
settle(k, id)
release(id, ARGV[6])
return {'ok', redis.call('HGETALL', k)}
`)

// scriptBackoff puts unfinished work back in the sweeper's queue for later
// and releases the lease. KEYS[1]: the account. ARGV[6..]: token, when to
// try next, "1" when an edit got no clear answer (the CRM's state is then
// unknown until an edit is accepted).
var scriptBackoff = redis.NewScript(prelude + `
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return {'gone'} end
local id = redis.call('HGET', k, 'id')
if not holds(id, ARGV[6]) then return {'lost'} end
if ARGV[8] == '1' then redis.call('HSET', k, 'unsure', '1') end
redis.call('HINCRBY', k, 'tries', 1)
if redis.call('HEXISTS', k, 'pseq') == 1 or not insync(k) then
  redis.call('ZADD', TAG .. ':inflight', ARGV[7], id)
else
  redis.call('ZREM', TAG .. ':inflight', id)
end
release(id, ARGV[6])
return {'ok'}
`)

// scriptActivity applies the CRM's activity callback: it is the CRM's own
// state, so it is the intention; and it is what the CRM has, unless an edit
// is on its way (someone else holds the lease), whose holder then sends it
// again. KEYS[1]: the account. ARGV[6..]: act, frz, the caller's lease
// token (released) or "", then events.
var scriptActivity = redis.NewScript(prelude + `
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return {'gone'} end
local id = redis.call('HGET', k, 'id')
upgrade(k)
local before = status(k)
-- Always a new version, even for the state already intended: an edit on
-- its way was built before this callback, and its holder must learn that
-- the CRM changed since (else it would record its own state as the last).
redis.call('HSET', k, 'wact', ARGV[6], 'wfrz', ARGV[7], 'wv', num(k, 'wv') + 1)
redis.call('HSET', k, 'aat', NOWS, 'uat', NOWS)
local mine = holds(id, ARGV[8])
if mine or lease_free(id) then
  redis.call('HSET', k, 'act', ARGV[6], 'frz', ARGV[7], 'sv', num(k, 'wv'))
end
events(k, 9)
reindex(id, before, status(k))
settle(k, id)
if mine then release(id, ARGV[8]) end
return {'ok', redis.call('HGETALL', k)}
`)

// scriptSettings replaces the sealed settings. KEYS[1]: the account.
// ARGV[6..]: the sealed settings ("" = none), events, re-sealed fields.
var scriptSettings = redis.NewScript(prelude + `
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return {'gone'} end
local id = redis.call('HGET', k, 'id')
upgrade(k)
if ARGV[6] == '' then redis.call('HDEL', k, 'set') else redis.call('HSET', k, 'set', ARGV[6]) end
redis.call('HSET', k, 'uat', NOWS)
local i = events(k, 7)
reseal(k, i)
rekid(k, id)
return {'ok', redis.call('HGETALL', k)}
`)

// scriptReseal writes re-sealed fields (compare-and-set each) and brings
// the account's key-id sets up to date; with no fields it only counts (a
// record of format 1 joins the sets). KEYS[1]: the account. ARGV[6..]:
// re-sealed fields. Replies {"ok", kids} or {"gone"}.
var scriptReseal = redis.NewScript(prelude + `
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return {'gone'} end
local id = redis.call('HGET', k, 'id')
reseal(k, 6)
rekid(k, id)
return {'ok', redis.call('HGET', k, 'kids')}
`)

// scriptRepair replaces what cannot be read in an account a register
// reached: a new clientId (the old one cannot be opened, so it cannot be
// sent to the CRM again), and the unreadable key and settings dropped.
// KEYS[1]: the account. ARGV[6..]: token, the new sealed clientId, its index
// key, then field/old pairs to drop if unchanged (count first), then events.
var scriptRepair = redis.NewScript(prelude + `
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return {'gone'} end
local id = redis.call('HGET', k, 'id')
if not holds(id, ARGV[6]) then return {'lost'} end
upgrade(k)
local n = tonumber(ARGV[9])
for j = 0, n - 1 do
  local f, old = ARGV[10 + 2 * j], ARGV[11 + 2 * j]
  if redis.call('HGET', k, f) == old then redis.call('HDEL', k, f) end
end
redis.call('HSET', k, 'cid', ARGV[7], 'uat', NOWS)
redis.call('SET', ARGV[8], id)
events(k, 10 + 2 * n)
rekid(k, id)
return {'ok', redis.call('HGETALL', k)}
`)

// scriptIntend records that an edit got no clear answer (a timeout, a
// lost reply: the CRM may or may not have applied it, even after changes
// recorded since), so the sweeper sends the intention until an edit is
// accepted; with a state, that state becomes the intention if the
// intention did not change since the caller read it. KEYS[1]: the account.
// ARGV[6..]: token, act, frz ("" for none), the intention version read.
// The lease is released.
var scriptIntend = redis.NewScript(prelude + `
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return {'gone'} end
local id = redis.call('HGET', k, 'id')
if not holds(id, ARGV[6]) then return {'lost'} end
upgrade(k)
redis.call('HSET', k, 'unsure', '1')
if ARGV[7] ~= '' and num(k, 'wv') == tonumber(ARGV[9]) then
  redis.call('HSET', k, 'wact', ARGV[7], 'wfrz', ARGV[8], 'wv', num(k, 'wv') + 1, 'uat', NOWS)
end
settle(k, id)
release(id, ARGV[6])
return {'ok'}
`)

// scriptKeyHealth records what a check of the account's key found, if the
// key checked is still the account's. KEYS[1]: the account. ARGV[6..]: the
// attempt that proved the checked key, the health ("" = healthy), the
// missing scopes. Replies {"ok", changed, hash}, {"stale"} or {"gone"}.
var scriptKeyHealth = redis.NewScript(prelude + `
local k = KEYS[1]
if redis.call('EXISTS', k) == 0 then return {'gone'} end
local id = redis.call('HGET', k, 'id')
if redis.call('HGET', k, 'con') ~= '1' or tostring(num(k, 'kseq')) ~= ARGV[6] then return {'stale'} end
upgrade(k)
local before = status(k)
local old = redis.call('HGET', k, 'kh') or ''
redis.call('HSET', k, 'kcat', NOWS)
if ARGV[7] == '' then redis.call('HDEL', k, 'kh', 'kmiss') else redis.call('HSET', k, 'kh', ARGV[7], 'kmiss', ARGV[8]) end
reindex(id, before, status(k))
local changed = 0
if old ~= ARGV[7] then
  changed = 1
  if ARGV[7] == 'key_revoked' then emit(k, 'account.key_revoked')
  elseif ARGV[7] == 'scopes_missing' then emit(k, 'account.scopes_missing')
  else emit(k, 'account.key_restored') end
end
return {'ok', changed, redis.call('HGETALL', k)}
`)

// scriptClaimKeyChecks hands out the key checks that are due, paced so
// that every account in the queue is checked once per interval, evenly:
// across all replicas together at most (accounts / interval) checks per
// unit of time, each account to one replica only. KEYS[1]: the queue.
// ARGV[6..]: the interval (ms), the most to hand out at once.
var scriptClaimKeyChecks = redis.NewScript(prelude + `
local q, meta = KEYS[1], TAG .. ':meta'
local n = redis.call('ZCARD', q)
local interval, most = tonumber(ARGV[6]), tonumber(ARGV[7])
if n == 0 then
  redis.call('HSET', meta, 'kc_last', NOWS)
  return {}
end
local per = interval / n
local last = tonumber(redis.call('HGET', meta, 'kc_last') or tostring(NOW - per))
-- Credit for time passed, but never more than a batch (after downtime,
-- checks resume at the pace, not in a burst).
last = math.max(last, NOW - most * per)
local budget = math.min(math.floor((NOW - last) / per), most)
if budget <= 0 then return {} end
local due = redis.call('ZRANGEBYSCORE', q, '-inf', NOWS, 'LIMIT', 0, budget)
if #due == 0 then
  redis.call('HSET', meta, 'kc_last', NOWS)
  return {}
end
for _, id in ipairs(due) do redis.call('ZADD', q, NOW + interval, id) end
redis.call('HSET', meta, 'kc_last', tostring(math.floor(last + #due * per)))
return due
`)
