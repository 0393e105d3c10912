-- release-lock: deletes a lock only if this holder's token is still in it; a lock that expired
-- and was taken by someone else is left alone.
-- KEYS: lock
-- ARGV: token
-- Returns 1 when released.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
