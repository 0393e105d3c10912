-- upsert-subscribers: adds subscribers, or merges each into the one with the same address identity
-- (emailKey, the lower-cased address), and puts them on one list; many rows per call, since the
-- cost of a script call, not of its work, is what bounds an import. The caller looked each address
-- up first and passes that subscriber's key, or a fresh id's key for a new one; a row the index
-- contradicts by now (a parallel import, or an earlier row of the same call with the same address)
-- is answered 'retry'. Never changes the status of an existing subscriber: re-importing an
-- unsubscribed address must not mail it again. Keeps the list's per-status counters.
-- KEYS: byEmail list listCounts lists (subscriber)...
-- ARGV: listName now (emailKey email name attributes id isNew)...
-- Returns three values per row, in order: 'ok', id, created (0|1) | 'retry', '', 0
local byEmail, listKey, countsKey, listsKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local listName, now = ARGV[1], ARGV[2]
local results = {}
for row = 0, #KEYS - 5 do
  local subscriberKey = KEYS[5 + row]
  local at = 3 + row * 6
  local emailKey, email, name, attributes, id, isNew = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4], ARGV[at + 5]
  local existing = redis.call('HGET', byEmail, emailKey)
  local outcome = 'ok'
  local created = 0
  if existing then
    if existing ~= id then outcome = 'retry' end
  elseif isNew ~= '1' then
    outcome = 'retry'
  else
    redis.call('HSET', byEmail, emailKey, id)
    redis.call('HSET', subscriberKey, 'email', email, 'status', 'active', 'createdAt', now, 'attributes', '{}')
    created = 1
  end
  if outcome == 'ok' then
    if name ~= '' then redis.call('HSET', subscriberKey, 'name', name) end
    if attributes ~= '{}' then
      local merged = cjson.decode(redis.call('HGET', subscriberKey, 'attributes') or '{}')
      for k, v in pairs(cjson.decode(attributes)) do merged[k] = v end
      redis.call('HSET', subscriberKey, 'attributes', cjson.encode(merged))
    end
    redis.call('HSET', subscriberKey, 'updatedAt', now)
    if redis.call('ZADD', listKey, tonumber(id), id) == 1 then
      redis.call('HINCRBY', countsKey, redis.call('HGET', subscriberKey, 'status') or 'active', 1)
    end
    results[#results + 1] = 'ok'
    results[#results + 1] = id
    results[#results + 1] = created
  else
    results[#results + 1] = 'retry'
    results[#results + 1] = ''
    results[#results + 1] = 0
  end
end
redis.call('SADD', listsKey, listName)
return results
