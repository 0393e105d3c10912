-- upsert-subscriber: adds a subscriber, or merges into the one with the same address identity
-- (emailKey, the lower-cased address), and puts them on a list. The caller looked the address up
-- first and passes that subscriber's key, or a fresh id's key for a new one; if the index says
-- otherwise by now (a parallel import), the reply is 'retry'. Never changes the status of an
-- existing subscriber: re-importing an unsubscribed address must not mail it again. Keeps the
-- list's per-status counters.
-- KEYS: byEmail subscriber list listCounts lists
-- ARGV: emailKey email name attributes listName now id isNew
-- Returns {'ok', id, created} | {'retry', ''}
local byEmail, subscriberKey, listKey, countsKey, listsKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local emailKey, email, name, attributes, listName, now, id, isNew =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local existing = redis.call('HGET', byEmail, emailKey)
local created = 0
if existing then
  if existing ~= id then return {'retry', ''} end
else
  if isNew ~= '1' then return {'retry', ''} end
  redis.call('HSET', byEmail, emailKey, id)
  redis.call('HSET', subscriberKey, 'email', email, 'status', 'active', 'createdAt', now, 'attributes', '{}')
  created = 1
end
if name ~= '' then redis.call('HSET', subscriberKey, 'name', name) end
if attributes ~= '{}' then
  local merged = cjson.decode(redis.call('HGET', subscriberKey, 'attributes') or '{}')
  for k, v in pairs(cjson.decode(attributes)) do merged[k] = v end
  redis.call('HSET', subscriberKey, 'attributes', cjson.encode(merged))
end
redis.call('HSET', subscriberKey, 'updatedAt', now)
if redis.call('ZADD', listKey, tonumber(id), id) == 1 then
  redis.call('HINCRBY', countsKey, redis.call('HGET', subscriberKey, 'status'), 1)
end
redis.call('SADD', listsKey, listName)
return {'ok', id, created}
