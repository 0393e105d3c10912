-- hold-domain: a breaker holds one recipient domain of a send (its jobs wait until `resume`),
-- unless the send is cancelled, the domain is held already, or a resume came since the counts were
-- read (`armed`, the resume count they were read under).
-- KEYS: send heldDomains
-- ARGV: domain reason armed
-- Returns 1 when held now, 0 otherwise
if redis.call('HGET', KEYS[1], 'control') == 'cancelled' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'armed') or '0') ~= tonumber(ARGV[3]) then return 0 end
return redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
