-- reserve-slot: a send slot under the pacing budgets shared by every worker process, in Redis time
-- (so all processes share one clock): the global ceiling (SEND_RATE_PER_SEC) and the recipient
-- domain's ceiling (DOMAIN_RATE_LIMITS) and "slow down" backoff. Slots are reserved, so each caller
-- gets its own: the caller waits until its slot, in-process if it is near; if the domain's slot is
-- further than maxWaitMs, only the domain slot is reserved and the job is put off until it. It
-- comes back with `reservedAt`, its slot, and is not charged the domain again if it comes back in
-- time (within one interval of its slot, and no backoff began since); a job that comes back late
-- (a backlog in the queue, a resume) is charged again, so late jobs never go in a burst.
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
local charged = domainInterval > 0 and reservedAt > 0 and backoffUntil <= reservedAt and now - reservedAt <= domainInterval
if charged then
  -- Back early (brought forward): still its own slot.
  slot = math.max(slot, reservedAt)
elseif domainInterval > 0 then
  slot = math.max(slot, domainNext)
end
-- Expiries are whole milliseconds: intervals such as 1000/3 are not.
local keepDomain = math.ceil(math.max(slot - now, 0)) + 3600000
if slot - now > maxWait then
  if domainInterval > 0 and not charged then redis.call('HSET', domainKey, 'next', slot + domainInterval) end
  redis.call('PEXPIRE', domainKey, keepDomain)
  return {'delay', math.ceil(slot - now), math.floor(slot)}
end
if globalInterval > 0 then
  slot = math.max(slot, tonumber(redis.call('GET', globalKey) or '0'))
  redis.call('SET', globalKey, slot + globalInterval, 'PX', math.ceil(math.max(slot - now, 0)) + 60000)
end
if domainInterval > 0 and not charged then
  redis.call('HSET', domainKey, 'next', slot + domainInterval)
  redis.call('PEXPIRE', domainKey, math.ceil(math.max(slot - now, 0)) + 3600000)
end
return {'wait', math.ceil(slot - now), math.floor(slot)}
