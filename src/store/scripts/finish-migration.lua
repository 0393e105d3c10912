-- finish-migration: the migration's last step, only while this process still holds the migration
-- lock: deletes what marks the old layout, sets the schema version, clears the in-progress marker.
-- KEYS: lock schemaVersion inProgress (oldMarker)...
-- ARGV: token version
-- Returns 1 when done, 0 when the lock is no longer ours (another process finishes instead).
local lockKey, versionKey, inProgressKey = KEYS[1], KEYS[2], KEYS[3]
if redis.call('GET', lockKey) ~= ARGV[1] then return 0 end
for index = 4, #KEYS do redis.call('DEL', KEYS[index]) end
redis.call('SET', versionKey, ARGV[2])
redis.call('DEL', inProgressKey)
return 1
