-- cancel-recipients: one page of a cancelled send's queued recipients: each one still queued and
-- not being sent right now (no `sending` claim) ends as skipped, reason cancelled. A claimed one is
-- left to its worker, which records what the SMTP server said. Returns the job ids of the skipped
-- recipients, so their delayed jobs can be brought forward and end at once.
-- USES: finish-if-done
-- KEYS: send recipients queuedJobs claims
-- ARGV: now (subscriberId)...
-- Returns {subscriberId, jobId, ...} of the recipients skipped (jobId '' when none is recorded)
local sendKey, recipientsKey, queuedJobsKey, claimsKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = ARGV[1]
if redis.call('HGET', sendKey, 'control') ~= 'cancelled' then return {} end
local skipped = {}
for index = 2, #ARGV do
  local id = ARGV[index]
  if redis.call('HGET', recipientsKey, id) == 'queued' and redis.call('HEXISTS', claimsKey, id) == 0 then
    redis.call('HSET', recipientsKey, id, 'skipped')
    skipped[#skipped + 1] = id
    skipped[#skipped + 1] = redis.call('HGET', queuedJobsKey, id) or ''
    redis.call('HDEL', queuedJobsKey, id)
  end
end
local count = #skipped / 2
if count > 0 then
  redis.call('HINCRBY', sendKey, 'skipped', count)
  redis.call('HINCRBY', sendKey, 'skipped:cancelled', count)
  finishIfDone(sendKey, recipientsKey, now)
end
return skipped
