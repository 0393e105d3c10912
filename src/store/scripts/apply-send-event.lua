-- apply-send-event: records one delivery event on the send it is about, once: remembers its id
-- (a replay changes nothing), keeps the recipient's strongest reported event so far (for `status
-- --failures`: a later soft bounce doesn't hide an earlier hard bounce or complaint; rank 0 is
-- never listed), and adds to the send's counter of its kind the first time the recipient has an
-- event of that kind, so the counters are recipients, not reports.
-- KEYS: send eventIds eventKinds reported
-- ARGV: subscriberId eventId kind counter rank event
-- Returns 1 when applied, 0 for a replay or a send that does not exist
local sendKey, eventIdsKey, kindsKey, reportedKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local subscriberId, eventId, kind, counter, rank, event = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
if redis.call('EXISTS', sendKey) == 0 then return 0 end
if redis.call('SADD', eventIdsKey, eventId) == 0 then return 0 end
local rankField = subscriberId .. ':rank'
if rank > 0 and rank >= tonumber(redis.call('HGET', kindsKey, rankField) or '0') then
  redis.call('HSET', reportedKey, subscriberId, event)
  redis.call('HSET', kindsKey, rankField, rank)
end
if counter ~= '' and redis.call('HSETNX', kindsKey, subscriberId .. ':' .. kind, 1) == 1 then
  redis.call('HINCRBY', sendKey, counter, 1)
end
return 1
