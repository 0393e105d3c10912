-- claim-recipient: the last check before a message goes to SMTP, and the `sending` claim that
-- keeps a second job for the same recipient from sending too (a job BullMQ handed to another
-- worker while the first one's event loop stalled). In one step: the recipient is still queued,
-- this job is the one assigned to it, the send is neither paused nor cancelled, the recipient's
-- domain is not held by a breaker, and no other live claim exists; then the claim is taken.
-- `takeOver` is the claim value the caller found dead (its worker stopped beating): it is replaced
-- only if it is still exactly that value.
-- KEYS: send recipients queuedJobs claims heldDomains
-- ARGV: subscriberId jobId claim domain takeOver
-- Returns {'claimed', ''} | {'done', state} | {'superseded', jobId} | {'paused', ''} | {'cancelled', ''} | {'held', ''} | {'claimed-by', claim}
local sendKey, recipientsKey, queuedJobsKey, claimsKey, heldKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local subscriberId, jobId, claim, domain, takeOver = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local state = redis.call('HGET', recipientsKey, subscriberId)
if state ~= 'queued' then return {'done', state or 'unknown'} end
local assigned = redis.call('HGET', queuedJobsKey, subscriberId)
if assigned and assigned ~= jobId then return {'superseded', assigned} end
local control = redis.call('HGET', sendKey, 'control')
if control == 'cancelled' then return {'cancelled', ''} end
if control == 'paused' then return {'paused', ''} end
if domain ~= '' and redis.call('HEXISTS', heldKey, domain) == 1 then return {'held', ''} end
local current = redis.call('HGET', claimsKey, subscriberId)
if current and current ~= takeOver then return {'claimed-by', current} end
redis.call('HSET', claimsKey, subscriberId, claim)
return {'claimed', ''}
