-- run_now.lua: an operator's "retry now": a delayed task or a waiting retry becomes pending
-- at once, ahead of its due time.
--
-- KEYS[1] scheduled  ZSET id -> due time (ms)
-- KEYS[2] retrying   ZSET id -> due time (ms)
-- KEYS[3] pending    ZSET id -> priority band + time
-- KEYS[4] signal     LIST wake-up token for idle workers
-- KEYS[5] task       HASH the task record
-- KEYS[6] flow prefix (a task of a fair group comes back at the queue's virtual time)
-- KEYS[7] events     STREAM the queue's state changes (see prelude.lua)
--
-- ARGV[1] id
--
-- Returns: {1, state it had} once pending; {0, state} if it was not waiting (nothing is
--          written); {0, ""} if the task is unknown.
local state = redis.call('HGET', KEYS[5], 'state')
if not state then
    return {0, ''}
end
if (state ~= 'scheduled' and state ~= 'retrying') or redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
    return {0, state}
end
redis.call('ZREM', KEYS[2], ARGV[1])
to_pending(KEYS[5], ARGV[1], KEYS[3], now_ms(), KEYS[6])
event(KEYS[7], 'due', ARGV[1], redis.call('HGET', KEYS[5], 'name'), 'early', 1)
wake(KEYS[4])
return {1, state}
