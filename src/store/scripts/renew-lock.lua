-- renew-lock: extends a lock only if this holder's token is still in it.
-- KEYS: lock
-- ARGV: token ms
-- Returns 1 when renewed, 0 when the lock is no longer ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
