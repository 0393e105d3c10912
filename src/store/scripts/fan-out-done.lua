-- fan-out-done: marks a send's fan-out complete; the send is finished at once if every recipient
-- already is (or it had none).
-- USES: finish-if-done
-- KEYS: send recipients
-- ARGV: now
local sendKey, recipientsKey = KEYS[1], KEYS[2]
local now = ARGV[1]
redis.call('HSETNX', sendKey, 'fanOutDoneAt', now)
finishIfDone(sendKey, recipientsKey, now)
return 1
