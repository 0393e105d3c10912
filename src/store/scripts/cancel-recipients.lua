-- cancel-recipients: one page of a cancelled send's queued recipients: each one still queued and
-- not being sent right now (no `sending` claim) ends as skipped, reason cancelled. A claimed one is
-- left to its worker, which records what the SMTP server said. Returns the job ids of the skipped
-- recipients, so their delayed jobs can be brought forward and end at once. Each id comes with its
-- recipient's domain ('' when unknown) for the dashboard's counters: the progress bucket that
-- starts at `bucket` (ms) and the per-domain counts.
-- USES: finish-if-done
-- KEYS: send recipients queuedJobs claims progress domains
-- ARGV: now bucket (subscriberId domain)...
-- Returns {subscriberId, jobId, ...} of the recipients skipped (jobId '' when none is recorded)
local sendKey, recipientsKey, queuedJobsKey, claimsKey, progressKey, domainsKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local now, bucket = ARGV[1], ARGV[2]
if redis.call('HGET', sendKey, 'control') ~= 'cancelled' then return {} end
local skipped = {}
local byDomain = {}
for index = 3, #ARGV - 1, 2 do
  local id, domain = ARGV[index], ARGV[index + 1]
  if redis.call('HGET', recipientsKey, id) == 'queued' and redis.call('HEXISTS', claimsKey, id) == 0 then
    redis.call('HSET', recipientsKey, id, 'skipped')
    skipped[#skipped + 1] = id
    skipped[#skipped + 1] = redis.call('HGET', queuedJobsKey, id) or ''
    redis.call('HDEL', queuedJobsKey, id)
    byDomain[domain] = (byDomain[domain] or 0) + 1
  end
end
local count = #skipped / 2
if count > 0 then
  redis.call('HINCRBY', sendKey, 'skipped', count)
  redis.call('HINCRBY', sendKey, 'skipped:cancelled', count)
  redis.call('HINCRBY', progressKey, bucket .. '|skipped', count)
  for domain, domainCount in pairs(byDomain) do redis.call('HINCRBY', domainsKey, domain .. '|skipped', domainCount) end
  finishIfDone(sendKey, recipientsKey, now)
end
return skipped
