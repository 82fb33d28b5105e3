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

-- The account's hash is read once (load) into H. Writes change H and are
-- sent together, one HSET and one HDEL (flush); the reply is H itself.
-- Each redis.call costs about a microsecond of Redis CPU beyond its work:
-- reading fields again and again cost a register most of its Redis time.
local K, H, PUT, DEL = nil, nil, {}, {}
local function load(k)
  local r = redis.call('HGETALL', k)
  if #r == 0 then return false end
  K, H = k, {}
  for i = 1, #r, 2 do H[r[i]] = r[i + 1] end
  return true
end
local function put(...)
  local a = {...}
  for i = 1, #a, 2 do
    local f, v = a[i], tostring(a[i + 1])
    H[f] = v; PUT[f] = v; DEL[f] = nil
  end
end
local function drop(...)
  for _, f in ipairs({...}) do
    if H[f] ~= nil then H[f] = nil; PUT[f] = nil; DEL[f] = true end
  end
end
local function flush()
  local a, d = {}, {}
  for f, v in pairs(PUT) do a[#a + 1] = f; a[#a + 1] = v end
  for f in pairs(DEL) do d[#d + 1] = f end
  if #a > 0 then redis.call('HSET', K, unpack(a)) end
  if #d > 0 then redis.call('HDEL', K, unpack(d)) end
  PUT, DEL = {}, {}
end
-- hash flushes and returns the account as HGETALL would.
local function hash()
  flush()
  local r = {}
  for f, v in pairs(H) do r[#r + 1] = f; r[#r + 1] = v end
  return r
end
local function num(f) return tonumber(H[f] or '0') or 0 end

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

local function status()
  if H.con ~= '1' then return 'pending' end
  if H.kh and H.kh ~= '' then return H.kh end
  if H.frz == '1' then return 'frozen' end
  if H.act == '1' then return 'active' end
  return 'inactive'
end
local function reindex(id, before, after)
  if before == after then return end
  if before then redis.call('ZREM', TAG .. ':idx:' .. before, id) end
  redis.call('ZADD', TAG .. ':idx:' .. after, 0, id)
end

-- A record of format 1 gets the fields format 2 derives from it.
local function upgrade()
  if H.v == '2' then return end
  if H.wact == nil then put('wact', H.act or '0') end
  if H.wfrz == nil then put('wfrz', H.frz or '0') end
  -- A pending key of format 1 becomes attempt 1, newer than the key's (0).
  if H.pkey ~= nil and H.pseq == nil then put('pseq', '1', 'aseq', '1') end
  put('v', '2')
end

-- The CRM has the intention once it accepted its version, or when what it
-- has equals what is wanted.
local function insync()
  -- An edit without a clear answer may have reached the CRM after anything
  -- recorded since: until an edit is accepted, the CRM's state is unknown.
  if H.unsure == '1' then return false end
  local wv = num('wv')
  if num('sv') >= wv then return true end
  if H.wact == H.act and H.wfrz == H.frz then
    put('sv', wv)
    return true
  end
  return false
end

-- Unfinished work (a pending attempt, an intention the CRM lacks) stays in
-- the sweeper's queue; finished work leaves it.
local function settle(id)
  local pending = H.pseq ~= nil
  local synced = insync()
  if pending or not synced then
    redis.call('ZADD', TAG .. ':inflight', 'NX', RETRY, id)
  else
    redis.call('ZREM', TAG .. ':inflight', id)
    drop('tries')
  end
  return synced
end

-- Which encryption keys sealed the record, read from the sealed values'
-- headers (version byte, 4-byte key id); each key id has a set of the
-- accounts it sealed, so a start can tell whether a key may go without
-- reading every account. The sets change only when the record's list
-- (kids) does: an unchanged list means the account is in those sets and
-- in no other.
local SEALED = {'cid', 'key', 'pkey', 'set'}
-- held_kids is the key ids whose sets hold the account now.
local function held_kids()
  if not H.kids then -- format 1: not recorded, so every set is a candidate
    return redis.call('SMEMBERS', TAG .. ':sealed')
  end
  local old = {}
  for x in string.gmatch(H.kids, '[^,]+') do table.insert(old, x) end
  return old
end
local function rekid(id)
  local set, list = {}, {}
  for _, f in ipairs(SEALED) do
    local v = H[f]
    if v and #v >= 5 then
      local kid = string.format('%02x%02x%02x%02x', string.byte(v, 2, 5))
      if not set[kid] then set[kid] = true; table.insert(list, kid) end
    end
  end
  table.sort(list)
  local kids = table.concat(list, ',')
  if H.kids == kids then return end
  for _, x in ipairs(held_kids()) do
    if not set[x] then redis.call('SREM', TAG .. ':sealed:' .. x, id) end
  end
  for _, x in ipairs(list) do
    redis.call('SADD', TAG .. ':sealed', x)
    redis.call('SADD', TAG .. ':sealed:' .. x, id)
  end
  put('kids', kids)
end

-- Fields re-sealed by the caller with the current key, each written only if
-- it still holds what the caller read: field, old, new, from ARGV[i].
local function reseal(i)
  local n = tonumber(ARGV[i]) or 0
  for j = 0, n - 1 do
    local f, old, new = ARGV[i + 1 + 3 * j], ARGV[i + 2 + 3 * j], ARGV[i + 3 + 3 * j]
    if H[f] == old then put(f, new) end
  end
  return i + 1 + 3 * n
end

local function emit(typ, extra)
  local v = {'type', typ, 'account_id', H.id, 'system_url', H.url or '', 'status', status(), 'at', AT}
  for _, x in ipairs(extra or {}) do table.insert(v, x) end
  redis.call('XADD', TAG .. ':events', 'MAXLEN', '~', MAXEV, '*', unpack(v))
end

-- Events from ARGV[i]: a count, then type, key_changed ("1"/"0") and the
-- previous address of each.
local function events(i)
  local n = tonumber(ARGV[i]) or 0
  for j = 0, n - 1 do
    local typ, kc, prev = ARGV[i + 1 + 3 * j], ARGV[i + 2 + 3 * j], ARGV[i + 3 + 3 * j]
    local extra = {}
    if kc == '1' then table.insert(extra, 'key_changed'); table.insert(extra, 'true') end
    if prev ~= '' then table.insert(extra, 'previous_system_url'); table.insert(extra, prev) end
    emit(typ, extra)
  end
  return i + 1 + 3 * n
end

-- remove deletes the account and everything that points at it; nothing of
-- it is written afterwards.
local function remove(id, client_key)
  local url = H.url
  for _, x in ipairs(held_kids()) do redis.call('SREM', TAG .. ':sealed:' .. x, id) end
  redis.call('DEL', K, lease_key(id))
  if client_key ~= '' and redis.call('GET', client_key) == id then redis.call('DEL', client_key) end
  if url and redis.call('GET', TAG .. ':shop:' .. url) == id then redis.call('DEL', TAG .. ':shop:' .. url) end
  redis.call('ZREM', TAG .. ':idx:all', id)
  redis.call('ZREM', TAG .. ':inflight', id)
  redis.call('ZREM', TAG .. ':keycheck', id)
  for _, st in ipairs({'pending', 'active', 'inactive', 'frozen', 'key_revoked', 'scopes_missing'}) do redis.call('ZREM', TAG .. ':idx:' .. st, id) end
  H, PUT, DEL = {}, {}, {}
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
local pkey
if not id then
  id = ARGV[6]; K, H = TAG .. ':acct:' .. id, {}; pkey = ARGV[9]
  put('v', '2', 'id', id, 'url', ARGV[12], 'cid', ARGV[7], 'con', '0', 'act', '0', 'frz', '0',
    'wact', '0', 'wfrz', '0', 'wv', '0', 'sv', '0', 'aseq', '0', 'edits', '0', 'cat', NOWS, 'uat', NOWS)
  redis.call('SET', KEYS[1], id)
  redis.call('SET', ARGV[8], id)
  redis.call('ZADD', TAG .. ':idx:all', 0, id)
  redis.call('ZADD', TAG .. ':idx:pending', 0, id)
else
  if not load(TAG .. ':acct:' .. id) then
    redis.call('DEL', KEYS[1])
    return {'retry', ''}
  end
  if id ~= ARGV[10] or ARGV[11] == '' then return {'retry', id} end
  pkey = ARGV[11]
  upgrade()
end
local seq = num('aseq') + 1
local wa = H.wact or '0'
local wv = num('wv')
if wa ~= '1' then
  wv = wv + 1
  put('wact', '1', 'wv', wv)
end
put('aseq', seq, 'pkey', pkey, 'pseq', seq, 'pat', NOWS, 'piv', wv, 'pwa', wa, 'uat', NOWS, 'tries', '0')
insync()
redis.call('ZADD', TAG .. ':inflight', RETRY, id)
rekid(id)
local got = 0
if lease_free(id) then take(id, ARGV[13], ARGV[14], ARGV[15]); got = 1 end
return {'ok', id, seq, got, hash()}
`)

// scriptAcquire takes an account's lease. KEYS[1]: the account. ARGV[6..]:
// token, end, backstop TTL. Replies {"ok", hash}, {"held"} or {"gone"}.
var scriptAcquire = redis.NewScript(prelude + `
if not load(KEYS[1]) then return {'gone'} end
local id = H.id
if not lease_free(id) then return {'held'} end
take(id, ARGV[6], ARGV[7], ARGV[8])
return {'ok', hash()}
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
if not load(KEYS[1]) then return {'gone'} end
local id = H.id
local token = ARGV[6]
if not holds(id, token) then return {'lost'} end
upgrade()
local before = status()
local old_url, url = H.url, ARGV[10]
if url ~= old_url then
  local owner = redis.call('GET', TAG .. ':shop:' .. url)
  if owner and owner ~= id and redis.call('EXISTS', TAG .. ':acct:' .. owner) == 1 then return {'taken'} end
  if redis.call('GET', TAG .. ':shop:' .. old_url) == id then redis.call('DEL', TAG .. ':shop:' .. old_url) end
  redis.call('SET', TAG .. ':shop:' .. url, id)
  put('url', url)
end
put('act', ARGV[7], 'frz', ARGV[8], 'uat', NOWS)
if ARGV[15] == '1' then
  put('edits', num('edits') + 1)
  drop('unsure')
end
local wv, seen = num('wv'), tonumber(ARGV[9])
if ARGV[13] == '1' then
  if wv == seen then
    put('wact', ARGV[7], 'wfrz', ARGV[8], 'wv', wv + 1, 'sv', wv + 1)
  end
elseif seen > num('sv') then
  put('sv', seen)
end
if ARGV[11] ~= '' then
  local pseq = ARGV[12]
  if H.con ~= '1' or tonumber(pseq) > num('kseq') then
    put('key', ARGV[11], 'kseq', pseq)
    -- a key the CRM just accepted is healthy until a check says otherwise
    drop('kh', 'kmiss')
    if ARGV[19] ~= '' then redis.call('ZADD', TAG .. ':keycheck', 'NX', ARGV[19], id) end
  end
  put('con', '1', 'nat', NOWS)
  if H.pseq == pseq then
    drop('pkey', 'pseq', 'pat', 'piv', 'pwa', 'tries')
  end
end
if ARGV[14] == '1' then put('aat', NOWS) end
local i = events(20)
reseal(i)
rekid(id)
reindex(id, before, status())
local synced = settle(id)
if synced and ARGV[16] == '1' then
  release(id, token)
else
  take(id, token, ARGV[17], ARGV[18])
end
return {'ok', synced and 1 or 0, hash()}
`)

// scriptAbort ends an attempt the CRM refused (or that the sweeper gave
// up), only if it is still the newest: an account never connected goes,
// a connected one keeps its key and, unless asked to keep it, gets back
// the intention it had before. KEYS[1]: the account. ARGV[6..]: attempt,
// token, the clientId index key, "1" to keep the intention.
// Replies {"deleted"}, {"aborted", hash}, {"superseded", hash}, {"lost"} or
// {"gone"}. The lease is released.
var scriptAbort = redis.NewScript(prelude + `
if not load(KEYS[1]) then return {'gone'} end
local id = H.id
local token = ARGV[7]
if not holds(id, token) then return {'lost'} end
upgrade()
local done = 'superseded'
if H.pseq == ARGV[6] then
  if H.con ~= '1' then
    remove(id, ARGV[8])
    return {'deleted'}
  end
  local back = H.pwa or H.act
  if ARGV[9] ~= '1' and num('wv') == num('piv') and back ~= H.wact then
    -- going back is an intention of its own: a new version
    put('wact', back, 'wv', num('wv') + 1)
  end
  drop('pkey', 'pseq', 'pat', 'piv', 'pwa', 'tries')
  put('uat', NOWS)
  rekid(id)
  done = 'aborted'
end
settle(id)
release(id, token)
return {done, hash()}
`)

// scriptAbandon gives up bringing the CRM to an intention it keeps
// refusing or never answers: the intention becomes what the CRM has.
// KEYS[1]: the account. ARGV[6]: token. The lease is released.
var scriptAbandon = redis.NewScript(prelude + `
if not load(KEYS[1]) then return {'gone'} end
local id = H.id
if not holds(id, ARGV[6]) then return {'lost'} end
upgrade()
put('wact', H.act or '0', 'wfrz', H.frz or '0', 'uat', NOWS)
settle(id)
release(id, ARGV[6])
return {'ok', hash()}
`)

// scriptBackoff puts unfinished work back in the sweeper's queue for later
// and releases the lease. KEYS[1]: the account. ARGV[6..]: token, when to
// try next, "1" when an edit got no clear answer (the CRM's state is then
// unknown until an edit is accepted). Replies {"ok", hash}.
var scriptBackoff = redis.NewScript(prelude + `
if not load(KEYS[1]) then return {'gone'} end
local id = H.id
if not holds(id, ARGV[6]) then return {'lost'} end
if ARGV[8] == '1' then put('unsure', '1') end
put('tries', num('tries') + 1)
if H.pseq ~= nil or not insync() then
  redis.call('ZADD', TAG .. ':inflight', ARGV[7], id)
else
  redis.call('ZREM', TAG .. ':inflight', id)
end
release(id, ARGV[6])
return {'ok', hash()}
`)

// scriptActivity applies the CRM's activity callback: it is the CRM's own
// state, so it is the intention; and it is what the CRM has, unless an edit
// is on its way (someone else holds the lease), whose holder then sends it
// again. KEYS[1]: the account. ARGV[6..]: act, frz, the caller's lease
// token (released) or "", then events.
var scriptActivity = redis.NewScript(prelude + `
if not load(KEYS[1]) then return {'gone'} end
local id = H.id
upgrade()
local before = status()
-- Always a new version, even for the state already intended: an edit on
-- its way was built before this callback, and its holder must learn that
-- the CRM changed since (else it would record its own state as the last).
local wv = num('wv') + 1
put('wact', ARGV[6], 'wfrz', ARGV[7], 'wv', wv, 'aat', NOWS, 'uat', NOWS)
local mine = holds(id, ARGV[8])
if mine or lease_free(id) then
  put('act', ARGV[6], 'frz', ARGV[7], 'sv', wv)
end
events(9)
reindex(id, before, status())
settle(id)
if mine then release(id, ARGV[8]) end
return {'ok', hash()}
`)

// scriptSettings replaces the sealed settings. KEYS[1]: the account.
// ARGV[6..]: the sealed settings ("" = none), events, re-sealed fields.
var scriptSettings = redis.NewScript(prelude + `
if not load(KEYS[1]) then return {'gone'} end
local id = H.id
upgrade()
if ARGV[6] == '' then drop('set') else put('set', ARGV[6]) end
put('uat', NOWS)
local i = events(7)
reseal(i)
rekid(id)
return {'ok', hash()}
`)

// scriptReseal writes re-sealed fields (compare-and-set each) and brings
// the account's key-id sets up to date; with no fields it only counts (a
// record of format 1 joins the sets). KEYS[1]: the account. ARGV[6..]:
// re-sealed fields. Replies {"ok", kids} or {"gone"}.
var scriptReseal = redis.NewScript(prelude + `
if not load(KEYS[1]) then return {'gone'} end
reseal(6)
rekid(H.id)
flush()
return {'ok', H.kids}
`)

// scriptRepair replaces what cannot be read in an account a register
// reached: the unreadable key and settings dropped and, when the clientId
// cannot be opened (so it cannot be sent to the CRM again), a new one.
// KEYS[1]: the account. ARGV[6..]: token, the new sealed clientId and its
// index key ("" and "" to keep the clientId), then field/old pairs to drop
// if unchanged (count first), then events.
var scriptRepair = redis.NewScript(prelude + `
if not load(KEYS[1]) then return {'gone'} end
local id = H.id
if not holds(id, ARGV[6]) then return {'lost'} end
upgrade()
local n = tonumber(ARGV[9])
for j = 0, n - 1 do
  local f, old = ARGV[10 + 2 * j], ARGV[11 + 2 * j]
  if H[f] == old then drop(f) end
end
if ARGV[7] ~= '' then
  put('cid', ARGV[7])
  redis.call('SET', ARGV[8], id)
end
put('uat', NOWS)
events(10 + 2 * n)
rekid(id)
return {'ok', hash()}
`)

// scriptIntend records that an edit got no clear answer (a timeout, a
// lost reply: the CRM may or may not have applied it, even after changes
// recorded since), so the sweeper sends the intention until an edit is
// accepted; with a state, that state becomes the intention if the
// intention did not change since the caller read it. KEYS[1]: the account.
// ARGV[6..]: token, act, frz ("" for none), the intention version read.
// The lease is released. Replies {"ok", hash}.
var scriptIntend = redis.NewScript(prelude + `
if not load(KEYS[1]) then return {'gone'} end
local id = H.id
if not holds(id, ARGV[6]) then return {'lost'} end
upgrade()
put('unsure', '1')
if ARGV[7] ~= '' and num('wv') == tonumber(ARGV[9]) then
  put('wact', ARGV[7], 'wfrz', ARGV[8], 'wv', num('wv') + 1, 'uat', NOWS)
end
settle(id)
release(id, ARGV[6])
return {'ok', hash()}
`)

// scriptKeyHealth records what a check of the account's key found, if the
// key checked is still the account's. KEYS[1]: the account. ARGV[6..]: the
// attempt that proved the checked key, the health ("" = healthy), the
// missing scopes. Replies {"ok", changed, hash}, {"stale"} or {"gone"}.
var scriptKeyHealth = redis.NewScript(prelude + `
if not load(KEYS[1]) then return {'gone'} end
local id = H.id
if H.con ~= '1' or tostring(num('kseq')) ~= ARGV[6] then return {'stale'} end
upgrade()
local before = status()
local old = H.kh or ''
put('kcat', NOWS)
if ARGV[7] == '' then drop('kh', 'kmiss') else put('kh', ARGV[7], 'kmiss', ARGV[8]) end
reindex(id, before, status())
local changed = 0
if old ~= ARGV[7] then
  changed = 1
  if ARGV[7] == 'key_revoked' then emit('account.key_revoked')
  elseif ARGV[7] == 'scopes_missing' then emit('account.scopes_missing')
  else emit('account.key_restored') end
end
return {'ok', changed, hash()}
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
