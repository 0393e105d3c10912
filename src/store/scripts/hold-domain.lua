-- hold-domain: a breaker holds one recipient domain of a send (its jobs wait until `resume`),
-- unless the send is cancelled or the domain is held already.
-- KEYS: send heldDomains
-- ARGV: domain reason
-- Returns 1 when held now, 0 otherwise
if redis.call('HGET', KEYS[1], 'control') == 'cancelled' then return 0 end
return redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
