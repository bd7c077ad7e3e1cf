"""The Redis store's scripts: one admits atomically (Redis' own clock, every limit of a key
checked and taken in one round trip), one settles.

Buckets are hashes {l: level, t: Redis time}; in-flight slots a sorted set scored by lease
end; spend plain float counters per period. Every key of one virtual key shares a hash tag
({id}) so the scripts also run on Redis Cluster.
"""

_LEVEL = """
local function level(key, cap, now)
  local v = redis.call('HMGET', key, 'l', 't')
  local l, ts = tonumber(v[1]), tonumber(v[2])
  if l == nil or ts == nil then return cap end
  local x = l + (now - ts) * cap / 60
  if x > cap then x = cap end
  return x
end
local function store(key, cap, l, now)
  redis.call('HSET', key, 'l', tostring(l), 't', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(((cap - l) * 60 / cap + 1) * 1000))
end
local function s(x)
  if x == nil then return '' end
  return tostring(x)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

ADMIT_LUA = _LEVEL + """
-- KEYS: requests bucket, tokens bucket, in-flight set, spend day, spend month
-- ARGV: rpm, tpm, tokens, max_concurrent, lease_s, request_id, budget_day, budget_month (0: none)
local rpm, tpm, need = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local maxc, lease, rid = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local bday, bmonth = tonumber(ARGV[7]), tonumber(ARGV[8])
if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= maxc then return {0, 'concurrency', '1'} end
end
if bday > 0 then
  local s = tonumber(redis.call('GET', KEYS[4]) or '0')
  if s >= bday then return {0, 'budget_day', '0', '', '', '', '', tostring(s)} end
end
if bmonth > 0 then
  local s = tonumber(redis.call('GET', KEYS[5]) or '0')
  if s >= bmonth then return {0, 'budget_month', '0', '', '', '', '', tostring(s)} end
end
local rl, tl = nil, nil
if rpm > 0 then
  rl = level(KEYS[1], rpm, now)
  if rl < 1 then return {0, 'rpm', s((1 - rl) * 60 / rpm), s(rl), s((rpm - rl) * 60 / rpm)} end
end
if tpm > 0 then
  tl = level(KEYS[2], tpm, now)
  local treset = tostring((tpm - tl) * 60 / tpm)
  if need > tpm then return {0, 'too_large', '0', s(rl), '0', s(tl), treset} end
  if tl < need then return {0, 'tpm', s((need - tl) * 60 / tpm), s(rl), '0', s(tl), treset} end
end
local out = {1, '', '0', '', '0', '', '0'}
if rpm > 0 then
  rl = rl - 1
  store(KEYS[1], rpm, rl, now)
  out[4], out[5] = tostring(rl), tostring((rpm - rl) * 60 / rpm)
end
if tpm > 0 then
  tl = tl - need
  store(KEYS[2], tpm, tl, now)
  out[6], out[7] = tostring(tl), tostring((tpm - tl) * 60 / tpm)
end
if maxc > 0 then
  redis.call('ZADD', KEYS[3], now + lease, rid)
  redis.call('PEXPIRE', KEYS[3], math.ceil(lease * 1000))
end
return out
"""

SETTLE_LUA = _LEVEL + """
-- KEYS: tokens bucket, in-flight set, spend day, spend month
-- ARGV: token_delta (real - estimate), tpm (0: none), request_id, cost, reserved (1/0)
local delta, tpm, rid, cost, reserved = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), ARGV[5]
if reserved == '1' then
  redis.call('ZREM', KEYS[2], rid)
  if tpm > 0 and delta ~= 0 then store(KEYS[1], tpm, level(KEYS[1], tpm, now) - delta, now) end
end
if cost > 0 then
  redis.call('INCRBYFLOAT', KEYS[3], tostring(cost))
  redis.call('EXPIRE', KEYS[3], 172800)
  redis.call('INCRBYFLOAT', KEYS[4], tostring(cost))
  redis.call('EXPIRE', KEYS[4], 2764800)
end
return 1
"""
