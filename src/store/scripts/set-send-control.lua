-- set-send-control: pauses, resumes or cancels a send, with who or what did it and why.
--   pause:  a running send stops starting messages (jobs wait); refused once finished or cancelled.
--   resume: ends a pause, releases every domain a breaker held, and re-arms the breakers (their
--           window's buckets are deleted, so the rates count from now).
--   cancel: final; ends the fan-out, so the send finishes once its last queued recipient is skipped.
-- A breaker's pause passes `armed`, the resume count its counts were read under: a resume since
-- then re-armed the breakers, and the stale trip changes nothing. Ops pass ''.
-- USES: finish-if-done
-- KEYS: send recipients heldDomains (breakerBucket)...
-- ARGV: action reason now armed
-- Returns {'changed', previousControl} | {'unchanged', control} | {'finished', ''} | {'cancelled', ''} | {'missing', ''}
local sendKey, recipientsKey, heldKey = KEYS[1], KEYS[2], KEYS[3]
local action, reason, now, armed = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', sendKey) == 0 then return {'missing', ''} end
local control = redis.call('HGET', sendKey, 'control') or 'active'
if control == 'cancelled' then return {'cancelled', ''} end
if action == 'pause' then
  if redis.call('HEXISTS', sendKey, 'finishedAt') == 1 then return {'finished', ''} end
  if control == 'paused' then return {'unchanged', control} end
  if armed ~= '' and tonumber(redis.call('HGET', sendKey, 'armed') or '0') ~= tonumber(armed) then return {'unchanged', control} end
  redis.call('HSET', sendKey, 'control', 'paused', 'stateReason', reason)
  return {'changed', control}
end
if action == 'resume' then
  local held = redis.call('HLEN', heldKey)
  if control ~= 'paused' and held == 0 then return {'unchanged', control} end
  redis.call('HDEL', sendKey, 'control', 'stateReason')
  redis.call('HINCRBY', sendKey, 'armed', 1)
  redis.call('DEL', heldKey)
  for index = 4, #KEYS do redis.call('DEL', KEYS[index]) end
  return {'changed', control}
end
-- cancel
redis.call('HSET', sendKey, 'control', 'cancelled', 'stateReason', reason)
redis.call('DEL', heldKey)
redis.call('HSETNX', sendKey, 'fanOutDoneAt', now)
finishIfDone(sendKey, recipientsKey, now)
return {'changed', control}
