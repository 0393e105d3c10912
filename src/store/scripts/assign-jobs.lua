-- assign-jobs: records which job serves each recipient, only for recipients still queued (an
-- entry is never re-created for one a worker has just finished), and, where an expected job id is
-- given, only if the entry still names that job (a repair replaces only the job it looked at).
-- The worker sends only for the job its recipient's entry names, so a recipient has one job that
-- may send, whatever else is in the queue.
-- KEYS: recipients queuedJobs
-- ARGV: (subscriberId jobId expectedJobId)...
-- Returns one 0|1 per row: 1 where the entry was set (add that job), 0 where it was not.
local recipientsKey, queuedJobsKey = KEYS[1], KEYS[2]
local assigned = {}
for at = 1, #ARGV, 3 do
  local subscriberId, jobId, expected = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local ok = redis.call('HGET', recipientsKey, subscriberId) == 'queued'
  if ok and expected ~= '' then ok = redis.call('HGET', queuedJobsKey, subscriberId) == expected end
  if ok then redis.call('HSET', queuedJobsKey, subscriberId, jobId) end
  assigned[#assigned + 1] = ok and 1 or 0
end
return assigned
