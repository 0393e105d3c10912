-- apply-send-event: records one delivery event on the send it is about, once: remembers its id
-- (a replay changes nothing), keeps it as the recipient's latest report (for `status
-- --failures`), and adds to the send's counter of its kind the first time the recipient has an
-- event of that kind, so the counters are recipients, not reports.
-- KEYS: send eventIds eventKinds reported
-- ARGV: subscriberId eventId kind counter event
-- Returns 1 when applied, 0 for a replay or a send that does not exist
local sendKey, eventIdsKey, kindsKey, reportedKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local subscriberId, eventId, kind, counter, event = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('EXISTS', sendKey) == 0 then return 0 end
if redis.call('SADD', eventIdsKey, eventId) == 0 then return 0 end
redis.call('HSET', reportedKey, subscriberId, event)
if counter ~= '' and redis.call('HSETNX', kindsKey, subscriberId .. ':' .. kind, 1) == 1 then
  redis.call('HINCRBY', sendKey, counter, 1)
end
return 1
