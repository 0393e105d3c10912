-- finish-if-done: the one rule that says a send is finished. Included by the scripts that change
-- a send's counters or its fan-out; nothing else sets finishedAt.
-- A send is finished when its fan-out is done and every recipient recorded so far is in a final
-- state (accepted + failed + skipped = recipients).
local function finishIfDone(sendKey, recipientsKey, now)
  if redis.call('HEXISTS', sendKey, 'fanOutDoneAt') == 0 then return end
  local final = tonumber(redis.call('HGET', sendKey, 'accepted') or '0')
    + tonumber(redis.call('HGET', sendKey, 'failed') or '0')
    + tonumber(redis.call('HGET', sendKey, 'skipped') or '0')
  if final >= redis.call('HLEN', recipientsKey) then redis.call('HSETNX', sendKey, 'finishedAt', now) end
end
