-- slow-down: a receiver answered "slow down" (421, or a 4.7.x status) for a domain: nothing more
-- goes to it until the backoff ends. The backoff doubles while the domain keeps answering so (up
-- to 16 times the base) for each answer that comes after a backoff has run out, and starts again
-- from the base once the domain has been quiet for twice the last backoff.
-- KEYS: domain backoffs
-- ARGV: domainName baseMs
-- Returns the backoff, in ms
local domainKey, backoffsKey, domainName, base = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local fields = redis.call('HMGET', domainKey, 'backoffStep', 'lastSlowDown', 'backoffUntil')
local step, last, untilMs = tonumber(fields[1] or '0'), tonumber(fields[2] or '0'), tonumber(fields[3] or '0')
local previous = base * 2 ^ math.max(step - 1, 0)
if now - last > 2 * previous then step = 0 end
-- Messages already at the server when it answered keep hearing the same answer for a while:
-- one backoff for all of them, not one step each.
if untilMs > now then return untilMs - now end
step = math.min(step + 1, 5)
local backoff = base * 2 ^ (step - 1)
redis.call('HSET', domainKey, 'backoffStep', step, 'lastSlowDown', now, 'backoffUntil', now + backoff)
-- The index every worker reads to know which domains to pace at all (ended ones are trimmed here).
redis.call('ZREMRANGEBYSCORE', backoffsKey, '-inf', now)
redis.call('ZADD', backoffsKey, now + backoff, domainName)
redis.call('PEXPIRE', domainKey, math.ceil(backoff * 4) + 3600000)
return backoff
