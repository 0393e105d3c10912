-- save-schedule-run: stores a schedule's record after (or during) the run of one occurrence, and
-- moves it on in the due set, only while this process still holds the occurrence's claim, the
-- schedule still exists (a delete while it ran stays deleted) and it is still due at that
-- occurrence. Another process that ran the same occurrence first makes this a no-op.
-- KEYS: schedules due claim
-- ARGV: scheduleId dueMs token record next
-- next: a time in ms (the next occurrence), 'done' (leave the due set) or 'keep' (stay due: a run in progress)
-- Returns 1 when saved, 0 when the claim, the schedule or the occurrence has gone
local schedulesKey, dueKey, claimKey = KEYS[1], KEYS[2], KEYS[3]
local scheduleId, dueMs, token, record, nextRun = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
if redis.call('GET', claimKey) ~= token then return 0 end
if redis.call('HEXISTS', schedulesKey, scheduleId) == 0 then return 0 end
if tonumber(redis.call('ZSCORE', dueKey, scheduleId) or '-1') ~= dueMs then return 0 end
redis.call('HSET', schedulesKey, scheduleId, record)
if nextRun == 'done' then
  redis.call('ZREM', dueKey, scheduleId)
elseif nextRun ~= 'keep' then
  redis.call('ZADD', dueKey, tonumber(nextRun), scheduleId)
end
return 1
