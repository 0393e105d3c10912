-- mark-recipient: moves one recipient from 'queued' to a final state and counts it, once. A
-- duplicate job, a retry after a crash, or a second worker finds the state already final and
-- changes nothing; so an accepted recipient is never counted as failed. The recipient's `sending`
-- claim, if any, ends with it. A skip may carry a reason (cancelled, suppressed), counted apart.
-- The dashboard's counters move with it: the send's progress (per 10-second bucket, `bucket` is
-- its start in ms) and its per-domain counts ('' when the recipient's domain is unknown).
-- `onlyIfJob`, when given, is the job the record is about: it applies only while that job is the
-- one assigned to the recipient. A worker's late record of a job that failed earlier must not
-- land on a recipient that --retry-failed has put back to queued meanwhile (assigned to a new job,
-- or to none yet): the new round would find it failed and never send.
-- USES: finish-if-done
-- KEYS: send recipients failures queuedJobs claims progress domains
-- ARGV: subscriberId state now failure reason bucket domain onlyIfJob
-- Returns the state before: 'queued' when this call changed it; 'superseded' when `onlyIfJob` is not the recipient's job.
local sendKey, recipientsKey, failuresKey, queuedJobsKey, claimsKey, progressKey, domainsKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local subscriberId, state, now, failure, reason, bucket, domain, onlyIfJob = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local current = redis.call('HGET', recipientsKey, subscriberId)
if current ~= 'queued' then return current or 'unknown' end
if onlyIfJob ~= '' and redis.call('HGET', queuedJobsKey, subscriberId) ~= onlyIfJob then return 'superseded' end
redis.call('HSET', recipientsKey, subscriberId, state)
redis.call('HDEL', queuedJobsKey, subscriberId)
redis.call('HDEL', claimsKey, subscriberId)
redis.call('HINCRBY', sendKey, state, 1)
if reason ~= '' then redis.call('HINCRBY', sendKey, state .. ':' .. reason, 1) end
if failure ~= '' then redis.call('HSET', failuresKey, subscriberId, failure) end
redis.call('HINCRBY', progressKey, bucket .. '|' .. state, 1)
redis.call('HINCRBY', domainsKey, domain .. '|' .. state, 1)
finishIfDone(sendKey, recipientsKey, now)
return 'queued'
