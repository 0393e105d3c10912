-- apply-send-event: records one delivery event on the send it is about, once: remembers its id
-- (a replay changes nothing), keeps the recipient's strongest reported event so far (for `status
-- --failures`: a later soft bounce doesn't hide an earlier hard bounce or complaint; rank 0 is
-- never listed), and adds to the send's counter of its kind the first time the recipient has an
-- event of that kind, so the counters are recipients, not reports. The same count goes to the
-- send's per-domain counts under the recipient's domain ('' when unknown), for the dashboard.
-- KEYS: send eventIds eventKinds reported domains
-- ARGV: subscriberId eventId kind counter rank event domain
-- Returns 1 when applied, 0 for a replay or a send that does not exist
local sendKey, eventIdsKey, kindsKey, reportedKey, domainsKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local subscriberId, eventId, kind, counter, rank, event, domain = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
if redis.call('EXISTS', sendKey) == 0 then return 0 end
if redis.call('SADD', eventIdsKey, eventId) == 0 then return 0 end
local rankField = subscriberId .. ':rank'
if rank > 0 and rank >= tonumber(redis.call('HGET', kindsKey, rankField) or '0') then
  redis.call('HSET', reportedKey, subscriberId, event)
  redis.call('HSET', kindsKey, rankField, rank)
end
if counter ~= '' and redis.call('HSETNX', kindsKey, subscriberId .. ':' .. kind, 1) == 1 then
  redis.call('HINCRBY', sendKey, counter, 1)
  redis.call('HINCRBY', domainsKey, domain .. '|' .. counter, 1)
end
return 1
