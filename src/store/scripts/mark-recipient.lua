-- mark-recipient: moves one recipient from 'queued' to a final state and counts it, once. A
-- duplicate job, a retry after a crash, or a second worker finds the state already final and
-- changes nothing; so an accepted recipient is never counted as failed. The recipient's `sending`
-- claim, if any, ends with it. A skip may carry a reason (cancelled, suppressed), counted apart.
-- USES: finish-if-done
-- KEYS: send recipients failures queuedJobs claims
-- ARGV: subscriberId state now failure reason
-- Returns the state before: 'queued' when this call changed it.
local sendKey, recipientsKey, failuresKey, queuedJobsKey, claimsKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local subscriberId, state, now, failure, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local current = redis.call('HGET', recipientsKey, subscriberId)
if current ~= 'queued' then return current or 'unknown' end
redis.call('HSET', recipientsKey, subscriberId, state)
redis.call('HDEL', queuedJobsKey, subscriberId)
redis.call('HDEL', claimsKey, subscriberId)
redis.call('HINCRBY', sendKey, state, 1)
if reason ~= '' then redis.call('HINCRBY', sendKey, state .. ':' .. reason, 1) end
if failure ~= '' then redis.call('HSET', failuresKey, subscriberId, failure) end
finishIfDone(sendKey, recipientsKey, now)
return 'queued'
