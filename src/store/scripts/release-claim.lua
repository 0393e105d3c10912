-- release-claim: gives up a `sending` claim (the job goes back without sending, or will retry
-- later), only if it is still the caller's.
-- KEYS: claims
-- ARGV: subscriberId claim
-- Returns 1 when released, 0 when the claim was not (or no longer) the caller's
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
