-- move-status: sets a subscriber's status and keeps the per-status counters of every list they
-- are on. The list keys come in (members, counts) pairs from KEYS[firstListKey] on. With
-- leaveLists, the subscriber is also taken off every list (a complaint: off every list, not only
-- the one that was mailed).
local function moveStatus(subscriberKey, id, current, to, now, firstListKey, leaveLists)
  redis.call('HSET', subscriberKey, 'status', to, 'updatedAt', now)
  for index = firstListKey, #KEYS, 2 do
    if redis.call('ZSCORE', KEYS[index], id) then
      redis.call('HINCRBY', KEYS[index + 1], current, -1)
      if leaveLists then
        redis.call('ZREM', KEYS[index], id)
      else
        redis.call('HINCRBY', KEYS[index + 1], to, 1)
      end
    end
  end
end
