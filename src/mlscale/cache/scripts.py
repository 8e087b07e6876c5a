"""The Lua scripts of the Redis tier: every read-modify-write of an entry is one of these.

An entry is ONE Redis hash at the caller's key, so every script touches keys of one
hash slot by construction (it works on Redis Cluster whatever the key looks like).
Its fields, each with its own deadline (milliseconds of the server's clock):

==========  =====================================================================
``v``       the value bytes (absent for a negative entry)
``n``       ``'1'`` for a negative entry (the database has no row: cached absence)
``ver``     the version of ``v`` / of the absence
``fx``      fresh until: before it ``get`` hits
``sx``      stale until (>= ``fx``): until then the value may be served as stale
``lt lx``   the outstanding lease token and its deadline
``tt tx``   the tombstone's causal token (may be absent) and the tombstone's deadline
``fl``      the version floor: the highest version ever stored or invalidated
==========  =====================================================================

Fields cannot expire one by one on Redis 7.0 (HPEXPIRE came in 7.4), so each
deadline is compared with ``TIME`` inside the script, and the key itself is set to
expire when its longest-lived part does (``settle``). The version floor lives as
long as the key; an invalidation keeps the key at least ``tombstone_ttl_ms``.

Versions travel as decimal strings and are compared as Lua numbers (doubles):
the Python side refuses versions outside ``0 .. 2**53 - 1``, where that is exact.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = [
    "ALL_SCRIPTS",
    "GET",
    "INVALIDATE",
    "LEASE_GET",
    "STORE",
    "TAG_ADD",
    "TAG_MEMBERS",
    "Script",
]


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script by name, with the SHA1 that EVALSHA calls it by."""

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function num(x)
  if x then return tonumber(x) end
  return nil
end
-- The key lives as long as its longest-lived part: the value (stale window
-- included), the lease, the tombstone. When all are over it goes, floor and all.
local function settle(k, now)
  local f = redis.call('HMGET', k, 'sx', 'lx', 'tx')
  local at = 0
  for i = 1, 3 do
    local x = num(f[i])
    if x and x > at then at = x end
  end
  if at <= now then
    redis.call('DEL', k)
  else
    redis.call('PEXPIREAT', k, string.format('%d', at))
  end
end
"""

# KEYS: entries. Reply: ONE bulk string, cmsgpack of an array with per key 0 (miss) |
# {'v', ver, value} | {'n', ver}. Packed, because redis-py parses a nested reply
# element by element in Python (about 400 elements for 100 keys, half the client's
# time of a batch); one string is one element, unpacked in C by msgpack.
GET = Script(
    "get",
    _PRELUDE
    + """
local now = now_ms()
local out = {}
for i, k in ipairs(KEYS) do
  local f = redis.call('HMGET', k, 'fx', 'ver', 'n', 'v')
  local fx = num(f[1])
  if fx and fx > now then
    if f[3] == '1' then out[i] = {'n', f[2]} else out[i] = {'v', f[2], f[4]} end
  else
    out[i] = 0
  end
end
return cmsgpack.pack(out)
""",
)

# KEYS[1]: entry. ARGV: token to grant, lease ttl ms, allow stale '1'/'0'.
# Reply: cmsgpack of {kind, ver, negative, value, tombstone, causal token} (one bulk
# string, as GET's) with kind 'hit', 'granted' or 'wait'; for the last two
# ver/negative/value describe the stale value served (ver '' when none).
LEASE_GET = Script(
    "lease_get",
    _PRELUDE
    + """
local k = KEYS[1]
local now = now_ms()
local f = redis.call('HMGET', k, 'fx', 'sx', 'ver', 'n', 'v', 'lx', 'tt', 'tx')
local fx, sx, lx, tx = num(f[1]), num(f[2]), num(f[6]), num(f[8])
if fx and fx > now then
  return cmsgpack.pack({'hit', f[3], f[4] == '1' and '1' or '0', f[5] or '', '0', ''})
end
local ver, neg, val = '', '0', ''
if ARGV[3] == '1' and sx and sx > now and f[3] then
  ver = f[3]
  neg = f[4] == '1' and '1' or '0'
  val = f[5] or ''
end
local tomb, ttok = '0', ''
if tx and tx > now then
  tomb = '1'
  ttok = f[7] or ''
end
if lx and lx > now then
  return cmsgpack.pack({'wait', ver, neg, val, tomb, ttok})
end
redis.call('HSET', k, 'lt', ARGV[1], 'lx', string.format('%d', now + tonumber(ARGV[2])))
settle(k, now)
return cmsgpack.pack({'granted', ver, neg, val, tomb, ttok})
""",
)

# KEYS[1]: entry. ARGV: mode ('lease' | 'set'), token, version, negative '1'/'0',
# value, ttl ms, stale window ms. Reply: 'ok' | 'lease' | 'version'.
# 'lease' mode (a fill) needs the outstanding token; 'set' mode (write-through)
# needs none and voids any lease, since the holder may have read an older row.
# Both need version >= floor; a fill refused for its version gives its lease back.
STORE = Script(
    "store",
    _PRELUDE
    + """
local k = KEYS[1]
local now = now_ms()
local f = redis.call('HMGET', k, 'lt', 'lx', 'fl')
if ARGV[1] == 'lease' then
  local lx = num(f[2])
  if (not f[1]) or f[1] ~= ARGV[2] or (not lx) or lx <= now then
    return 'lease'
  end
end
local fl = num(f[3])
if fl and tonumber(ARGV[3]) < fl then
  if ARGV[1] == 'lease' then
    redis.call('HDEL', k, 'lt', 'lx')
    settle(k, now)
  end
  return 'version'
end
local fx = now + tonumber(ARGV[6])
redis.call('HSET', k, 'ver', ARGV[3], 'n', ARGV[4], 'v', ARGV[5], 'fl', ARGV[3],
  'fx', string.format('%d', fx), 'sx', string.format('%d', fx + tonumber(ARGV[7])))
redis.call('HDEL', k, 'lt', 'lx')
settle(k, now)
return 'ok'
""",
)

# KEYS: entries (one slot). ARGV: causal token ('' for none), tombstone ttl ms,
# stale window ms, version the writer wrote ('' if unknown).
# Reply: how many of the keys held a fresh value.
INVALIDATE = Script(
    "invalidate",
    _PRELUDE
    + """
local now = now_ms()
local removed = 0
local keep = tonumber(ARGV[3])
for _, k in ipairs(KEYS) do
  local f = redis.call('HMGET', k, 'fx', 'sx', 'fl', 'tx')
  local fx, sx, fl, tx = num(f[1]), num(f[2]), num(f[3]), num(f[4])
  if fx and fx > now then removed = removed + 1 end
  if keep > 0 and sx and sx > now then
    -- Kept for stale serves only; never fresh again.
    redis.call('HSET', k, 'fx', string.format('%d', now),
      'sx', string.format('%d', math.min(sx, now + keep)))
  else
    redis.call('HDEL', k, 'v', 'n', 'ver', 'fx', 'sx')
  end
  redis.call('HDEL', k, 'lt', 'lx', 'tt')
  local until_ms = now + tonumber(ARGV[2])
  if tx and tx > until_ms then until_ms = tx end
  redis.call('HSET', k, 'tx', string.format('%d', until_ms))
  if ARGV[1] ~= '' then redis.call('HSET', k, 'tt', ARGV[1]) end
  if ARGV[4] ~= '' and ((not fl) or tonumber(ARGV[4]) > fl) then
    redis.call('HSET', k, 'fl', ARGV[4])
  end
  settle(k, now)
end
return removed
""",
)

# KEYS[1]: a tag (sorted set: member -> deadline ms). ARGV: life ms, members...
# A membership only ever grows longer (GT); memberships over are pruned here, and
# the tag key expires with its longest membership.
TAG_ADD = Script(
    "tag_add",
    _PRELUDE
    + """
local t = KEYS[1]
local now = now_ms()
local at = string.format('%d', now + tonumber(ARGV[1]))
for i = 2, #ARGV do
  redis.call('ZADD', t, 'GT', at, ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', t, '-inf', string.format('(%d', now))
local top = redis.call('ZRANGE', t, -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', t, string.format('%d', tonumber(top[2]))) end
return #ARGV - 1
""",
)

# KEYS[1]: a tag. Reply: the members whose membership is not over.
TAG_MEMBERS = Script(
    "tag_members",
    _PRELUDE
    + """
local now = now_ms()
return redis.call('ZRANGEBYSCORE', KEYS[1], string.format('%d', now), '+inf')
""",
)

ALL_SCRIPTS: tuple[Script, ...] = (GET, LEASE_GET, STORE, INVALIDATE, TAG_ADD, TAG_MEMBERS)
