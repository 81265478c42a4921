-- replay_edited.lua: requeue one dead letter with a payload an operator corrected.
--
-- KEYS[1] dead     ZSET id -> time of death (ms)
-- KEYS[2] pending  ZSET id -> priority band + time
-- KEYS[3] signal   LIST wake-up token for idle workers
-- KEYS[4] task     HASH the task record
-- KEYS[5] events   STREAM the queue's state changes (see prelude.lua)
--
-- ARGV[1] id
-- ARGV[2] args (JSON list)
-- ARGV[3] kwargs (JSON object)
--
-- Returns: 1 once replayed with the new payload; 0 if it is not a dead letter (nothing
-- is written: the payload of a task that left the dead set meanwhile is not touched).
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('TYPE', KEYS[4])['ok'] ~= 'hash' then
    return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[4], 'args', ARGV[2], 'kwargs', ARGV[3])
revive(KEYS[4], ARGV[1], KEYS[2], now_ms())
event(KEYS[5], 'replayed', ARGV[1], redis.call('HGET', KEYS[4], 'name'), 'edited', 1)
wake(KEYS[3])
return 1
