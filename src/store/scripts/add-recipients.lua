-- add-recipients: records a fan-out chunk's recipients as queued (first time only, so a repeated
-- chunk changes nothing), unless the send was cancelled: a cancel stops the fan-out, and nothing
-- is queued after it.
-- KEYS: send recipients
-- ARGV: (subscriberId)...
-- Returns 1 when recorded, 0 when the send is cancelled
if redis.call('HGET', KEYS[1], 'control') == 'cancelled' then return 0 end
for index = 1, #ARGV do redis.call('HSETNX', KEYS[2], ARGV[index], 'queued') end
return 1
