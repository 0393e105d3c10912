-- reserve-slot: a send slot under the pacing budgets shared by every worker process, in Redis time
-- (so all processes share one clock): the global ceiling (SEND_RATE_PER_SEC) and the recipient
-- domain's ceiling (DOMAIN_RATE_LIMITS) and "slow down" backoff. Slots are reserved, so each caller
-- gets its own: the caller waits until its slot, in-process if it is near; if the domain's slot is
-- further than maxWaitMs, only the domain slot is reserved and the job is put off until it (it
-- comes back with `reservedAt`, its slot, and is not charged the domain again, unless a backoff
-- began since).
-- KEYS: global domain
-- ARGV: globalIntervalMs domainIntervalMs reservedAt maxWaitMs
-- Returns {'wait', ms, slot} | {'delay', ms, slot}: how long from now, and the slot (Redis time, ms)
local globalKey, domainKey = KEYS[1], KEYS[2]
local globalInterval, domainInterval = tonumber(ARGV[1]), tonumber(ARGV[2])
local reservedAt, maxWait = tonumber(ARGV[3]), tonumber(ARGV[4])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local fields = redis.call('HMGET', domainKey, 'next', 'backoffUntil')
local domainNext, backoffUntil = tonumber(fields[1] or '0'), tonumber(fields[2] or '0')
local slot = math.max(now, backoffUntil)
-- A job that holds a domain slot is not charged again, unless a backoff began after it reserved.
local charged = reservedAt > 0 and backoffUntil <= reservedAt
if domainInterval > 0 and not charged then slot = math.max(slot, domainNext) end
if slot - now > maxWait then
  if domainInterval > 0 and not charged then redis.call('HSET', domainKey, 'next', slot + domainInterval) end
  redis.call('PEXPIRE', domainKey, math.max(slot - now, 0) + 3600000)
  return {'delay', slot - now, slot}
end
if globalInterval > 0 then
  slot = math.max(slot, tonumber(redis.call('GET', globalKey) or '0'))
  redis.call('SET', globalKey, slot + globalInterval, 'PX', math.max(slot - now, 0) + 60000)
end
if domainInterval > 0 and not charged then
  redis.call('HSET', domainKey, 'next', slot + domainInterval)
  redis.call('PEXPIRE', domainKey, math.max(slot - now, 0) + 3600000)
end
return {'wait', slot - now, slot}
