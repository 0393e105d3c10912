-- apply-subscriber-event: applies one delivery event to its subscriber, once: remembers its id
-- (a replay changes nothing), keeps it among the subscriber's recent events, counts a soft bounce
-- in the rolling window (expiring older ones), and suppresses as the policy says. A suppression
-- only replaces a weaker status (fromStatuses), so a later, weaker event never downgrades one.
-- The caller passes a (members, counts) pair of keys for every list; if the number of lists
-- changed since it read them, the reply is 'retry'.
-- USES: move-status
-- KEYS: subscriber lists eventIds recentEvents softBounces (listMembers listCounts)...
-- ARGV: subscriberId eventId event nowMs now idHorizonMs recentLimit softMember softAtMs softWindowMs softLimit suppressTo fromStatuses leaveLists listCount
-- Returns {outcome, statusBefore, statusAfter}; outcome: 'applied' | 'duplicate' | 'missing' | 'retry'
local subscriberKey, listsKey, eventIdsKey, recentKey, softKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, eventId, event = ARGV[1], ARGV[2], ARGV[3]
local nowMs, now, idHorizonMs, recentLimit = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local softMember, softAtMs, softWindowMs, softLimit = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local suppressTo, from, leaveLists, listCount = ARGV[12], ARGV[13], ARGV[14] == '1', tonumber(ARGV[15])
if redis.call('SCARD', listsKey) ~= listCount then return {'retry', '', ''} end
local current = redis.call('HGET', subscriberKey, 'status')
if not current then return {'missing', '', ''} end
if redis.call('ZSCORE', eventIdsKey, eventId) then return {'duplicate', current, current} end

redis.call('ZADD', eventIdsKey, nowMs, eventId)
redis.call('ZREMRANGEBYSCORE', eventIdsKey, '-inf', nowMs - idHorizonMs)
redis.call('PEXPIRE', eventIdsKey, idHorizonMs)
redis.call('LPUSH', recentKey, event)
redis.call('LTRIM', recentKey, 0, recentLimit - 1)

if softWindowMs > 0 then
  -- One member per message (send): a provider reporting every retry of one message as a soft
  -- bounce (Mailgun's temporary failures, SendGrid's deferrals) counts once, not per retry.
  redis.call('ZADD', softKey, 'GT', softAtMs, softMember)
  redis.call('ZREMRANGEBYSCORE', softKey, '-inf', nowMs - softWindowMs)
  redis.call('PEXPIRE', softKey, softWindowMs)
  if redis.call('ZCARD', softKey) < softLimit then suppressTo = '' end
end

if suppressTo ~= '' then
  for status in string.gmatch(from, '[^,]+') do
    if status == current then
      moveStatus(subscriberKey, id, current, suppressTo, now, 6, leaveLists)
      return {'applied', current, suppressTo}
    end
  end
end
return {'applied', current, current}
