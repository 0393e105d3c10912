-- create-send: records a new send of an issue to a list, with its compiled issue, unless one
-- exists already (and resend is not '1'). Two editors pressing "send" at once get one send.
-- The caller proposes the id "<issue>.<list>.<expectedCount + 1>" so that every key is in KEYS;
-- if another send was created in between, the reply is 'retry'.
-- With a leaseToken, the new send's fan-out lease is taken in the same call (for leaseMs): no
-- other `send` can take the new send for an interrupted one and queue it too.
-- KEYS: listSends issueSends send artifact fanOutLease
-- ARGV: expectedCount sendId issueId list resend now artifact contentHash leaseToken leaseMs
-- Returns {'created', sendId} | {'exists', latestSendId} | {'retry', ''}
local listSends, issueSends, sendKey, artifactKey, leaseKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local expectedCount, sendId, issueId, list, resend, now, artifact, contentHash, leaseToken, leaseMs =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local count = redis.call('LLEN', listSends)
if count > 0 and resend ~= '1' then return {'exists', redis.call('LINDEX', listSends, -1)} end
if count ~= tonumber(expectedCount) then return {'retry', ''} end
redis.call('RPUSH', listSends, sendId)
redis.call('RPUSH', issueSends, sendId)
redis.call('HSET', sendKey, 'id', sendId, 'issueId', issueId, 'list', list, 'createdAt', now,
  'fanOutCursor', '0', 'accepted', '0', 'failed', '0', 'skipped', '0', 'contentHash', contentHash)
redis.call('SET', artifactKey, artifact)
if leaseToken ~= '' then redis.call('SET', leaseKey, leaseToken, 'PX', leaseMs) end
return {'created', sendId}
