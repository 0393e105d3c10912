-- change-status: changes a subscriber's status only from one of the allowed statuses (see
-- STATUS_CHANGES in core/subscriber.ts), atomically, and moves them between the per-status
-- counters of every list they are on. A bounce recorded by a worker in the meantime is never
-- overwritten by an unsubscribe. The caller passes a (members, counts) pair of keys for every
-- list; if the number of lists changed since it read them, the reply is 'retry'.
-- USES: move-status
-- KEYS: subscriber lists (listMembers listCounts)...
-- ARGV: subscriberId fromStatuses toStatus now listCount
-- Returns {'changed', previous} | {'unchanged', current} | {'missing', ''} | {'retry', ''}
local subscriberKey, listsKey = KEYS[1], KEYS[2]
local id, from, to, now, listCount = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
if redis.call('SCARD', listsKey) ~= listCount then return {'retry', ''} end
local current = redis.call('HGET', subscriberKey, 'status')
if not current then return {'missing', ''} end
local allowed = false
for status in string.gmatch(from, '[^,]+') do
  if status == current then allowed = true end
end
if not allowed then return {'unchanged', current} end
moveStatus(subscriberKey, id, current, to, now, 3, false)
return {'changed', current}
