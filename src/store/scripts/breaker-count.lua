-- breaker-count: counts one outcome for the reputation breakers of a send, in the current minute's
-- bucket, for the whole send (*) and for the recipient's domain, and returns the sums over the
-- window's buckets for both, with the send's control and whether the domain is held already. The
-- judgement (a rate over its threshold) is core/breaker-policy.ts; this only counts.
-- KEYS: send heldDomains (bucket)...
-- ARGV: domain sample kind ttlSeconds
-- Returns {control, domainHeld, sendSample, sendHard, sendComplaint, sendBlock, domainSample, domainHard, domainComplaint, domainBlock, armed},
-- or control 'unjudged' when no judgement is due; `armed` counts the resumes (a trip judged on counts
-- from before a resume must not undo it)
local sendKey, heldKey, current = KEYS[1], KEYS[2], KEYS[3]
local domain, sample, kind, ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
if sample > 0 then
  redis.call('HINCRBY', current, '*|sample', sample)
  if domain ~= '' then redis.call('HINCRBY', current, domain .. '|sample', sample) end
end
if kind ~= '' then
  redis.call('HINCRBY', current, '*|' .. kind, 1)
  if domain ~= '' then redis.call('HINCRBY', current, domain .. '|' .. kind, 1) end
end
redis.call('EXPIRE', current, ttl)
local sums = {0, 0, 0, 0, 0, 0, 0, 0}
-- A message accepted can only lower a rate, unless it brings the sample up to the minimum: the
-- sums (the window's buckets) are read for every event of a watched kind, and for every 20th
-- message of the send or of the domain in this minute, so a send with bounces counted before its
-- sample was large enough still trips within 20 messages of reaching it.
local judge = kind ~= ''
if not judge and sample > 0 then
  local counts = redis.call('HMGET', current, '*|sample', domain .. '|sample')
  judge = tonumber(counts[1] or '0') % 20 == 0 or (domain ~= '' and tonumber(counts[2] or '0') % 20 == 0)
end
if not judge then return {'unjudged', 0, 0, 0, 0, 0, 0, 0, 0, 0} end
for index = 3, #KEYS do
  local values = redis.call('HMGET', KEYS[index], '*|sample', '*|hard', '*|complaint', '*|block',
    domain .. '|sample', domain .. '|hard', domain .. '|complaint', domain .. '|block')
  for position = 1, 8 do sums[position] = sums[position] + tonumber(values[position] or '0') end
end
local held = 0
if domain ~= '' then held = redis.call('HEXISTS', heldKey, domain) end
local reply = {redis.call('HGET', sendKey, 'control') or 'active', held}
for position = 1, 8 do reply[#reply + 1] = sums[position] end
reply[#reply + 1] = tonumber(redis.call('HGET', sendKey, 'armed') or '0')
return reply
