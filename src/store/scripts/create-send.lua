-- create-send: records a new send of an issue to a list, with its compiled issue, unless one
-- exists already (and resend is not '1'). Two editors pressing "send" at once get one send.
-- The caller proposes the id "<issue>.<list>.<expectedCount + 1>" so that every key is in KEYS;
-- if another send was created in between, the reply is 'retry'.
-- KEYS: listSends issueSends send artifact
-- ARGV: expectedCount sendId issueId list resend now artifact contentHash
-- Returns {'created', sendId} | {'exists', latestSendId} | {'retry', ''}
local listSends, issueSends, sendKey, artifactKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local expectedCount, sendId, issueId, list, resend, now, artifact, contentHash =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local count = redis.call('LLEN', listSends)
if count > 0 and resend ~= '1' then return {'exists', redis.call('LINDEX', listSends, -1)} end
if count ~= tonumber(expectedCount) then return {'retry', ''} end
redis.call('RPUSH', listSends, sendId)
redis.call('RPUSH', issueSends, sendId)
redis.call('HSET', sendKey, 'id', sendId, 'issueId', issueId, 'list', list, 'createdAt', now,
  'fanOutCursor', '0', 'accepted', '0', 'failed', '0', 'skipped', '0', 'contentHash', contentHash)
redis.call('SET', artifactKey, artifact)
return {'created', sendId}
