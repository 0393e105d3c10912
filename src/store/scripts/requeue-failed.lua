-- requeue-failed: one page of `send --retry-failed`. Of the ids given (a page of the failures hash,
-- a bounded number, so Redis is never blocked for long), puts back to queued those still failed on
-- a temporary error (attempts ran out, a stalled job), fixing the counts, and records them in the
-- pending set until their jobs are added (the caller then removes exactly those ids). A run that
-- died before that leaves them pending, and the next run gives them jobs under the send's
-- retryRound first. Permanent failures (a 5xx for that address) stay failed: sending again would
-- get the same answer. An id not failed, or with no failure entry, is left alone, and an id given
-- twice is requeued and counted once (HSCAN may return an entry twice).
-- `round` is the run's retry round, or 0 when it has none yet: the first id requeued then takes
-- the next one, and only if nothing is pending, so every pending id belongs to the send's current
-- retryRound. A round other than the current one is refused (another run took a round since).
-- The dashboard's counters follow: the progress bucket that starts at `bucket` (ms) counts the
-- recipients requeued (the series takes them off `failed`), and each one's domain, kept in its
-- failure record, counts one failure less (a failure recorded before the per-domain counts has
-- no domain there, and was never counted).
-- KEYS: send recipients failures pending progress domains
-- ARGV: round bucket (subscriberId)...
-- Returns {round, ids}: the run's round (still 0 while nothing was requeued) and the ids requeued now
local sendKey, recipientsKey, failuresKey, pendingKey, progressKey, domainsKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local round, bucket = tonumber(ARGV[1]), ARGV[2]
local FIRST_ID = 3
local current = tonumber(redis.call('HGET', sendKey, 'retryRound') or '0')
if round ~= 0 and round ~= current then
  return redis.error_reply('requeue-failed: retry round ' .. round .. ' is not the send\'s current round ' .. current)
end
-- Reads and writes go by batches (one call per batch, not per id): unpack() of a long list fails
-- past ~8,000 values, so a batch stays well under that whatever the page size.
local BATCH = 1000
local ids, seen, byDomain = {}, {}, {}
for from = FIRST_ID, #ARGV, BATCH do
  local to = math.min(from + BATCH - 1, #ARGV)
  local states = redis.call('HMGET', recipientsKey, unpack(ARGV, from, to))
  local failures = redis.call('HMGET', failuresKey, unpack(ARGV, from, to))
  for offset = 1, to - from + 1 do
    local id, failure = ARGV[from + offset - 1], failures[offset]
    if states[offset] == 'failed' and failure and not seen[id] then
      local decoded = cjson.decode(failure)
      if not decoded.permanent then
        seen[id] = true
        ids[#ids + 1] = id
        if type(decoded.domain) == 'string' then byDomain[decoded.domain] = (byDomain[decoded.domain] or 0) + 1 end
      end
    end
  end
end
if #ids == 0 then return {round, ids} end
if round == 0 then
  if redis.call('SCARD', pendingKey) > 0 then
    return redis.error_reply('requeue-failed: recipients of retry round ' .. current .. ' are still pending; give them jobs first')
  end
  round = redis.call('HINCRBY', sendKey, 'retryRound', 1)
end
for from = 1, #ids, BATCH do
  local to = math.min(from + BATCH - 1, #ids)
  redis.call('SADD', pendingKey, unpack(ids, from, to))
  redis.call('HDEL', failuresKey, unpack(ids, from, to))
  local fields = {}
  for index = from, to do
    fields[#fields + 1] = ids[index]
    fields[#fields + 1] = 'queued'
  end
  redis.call('HSET', recipientsKey, unpack(fields))
end
redis.call('HINCRBY', sendKey, 'failed', -#ids)
redis.call('HINCRBY', progressKey, bucket .. '|requeued', #ids)
for domain, count in pairs(byDomain) do redis.call('HINCRBY', domainsKey, domain .. '|failed', -count) end
redis.call('HDEL', sendKey, 'finishedAt')
return {round, ids}
