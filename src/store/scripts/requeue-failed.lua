-- requeue-failed: puts the recipients who failed temporarily (attempts ran out, a stalled job)
-- back to queued, fixing the counts, and returns their ids with the retry round. Permanent failures
-- (a 5xx for that address) stay failed: sending again would get the same answer. The ids stay in
-- the pending set until their jobs are added; a run that died before that gets the same round and
-- ids back, never a stuck send.
-- KEYS: send recipients failures pending
-- ARGV: (none)
-- Returns {round, ids}
local sendKey, recipientsKey, failuresKey, pendingKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', pendingKey) == 1 then
  return {tonumber(redis.call('HGET', sendKey, 'retryRound')), redis.call('SMEMBERS', pendingKey)}
end
local ids = {}
local entries = redis.call('HGETALL', failuresKey)
for index = 1, #entries, 2 do
  local id, failure = entries[index], cjson.decode(entries[index + 1])
  if not failure.permanent and redis.call('HGET', recipientsKey, id) == 'failed' then
    -- One SADD per id: unpack() of a long list fails past ~8,000 ids, after earlier writes stuck.
    redis.call('SADD', pendingKey, id)
    redis.call('HSET', recipientsKey, id, 'queued')
    redis.call('HINCRBY', sendKey, 'failed', -1)
    redis.call('HDEL', failuresKey, id)
    ids[#ids + 1] = id
  end
end
if #ids == 0 then return {0, ids} end
redis.call('HDEL', sendKey, 'finishedAt')
return {redis.call('HINCRBY', sendKey, 'retryRound', 1), ids}
