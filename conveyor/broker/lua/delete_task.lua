-- delete_task.lua: an operator deletes a task that is not running, in any state.
--
-- KEYS[1] pending    ZSET id -> priority band + time
-- KEYS[2] scheduled  ZSET id -> due time (ms)
-- KEYS[3] retrying   ZSET id -> due time (ms)
-- KEYS[4] dead       ZSET id -> time of death (ms)
-- KEYS[5] active     ZSET id -> lease deadline (ms)
-- KEYS[6] task       HASH the task record
-- KEYS[7] ready      LIST pending ids of the default priority
-- KEYS[8] flow prefix (flow-control keys, see prelude.lua)
-- KEYS[9] events     STREAM the queue's state changes (see prelude.lua)
--
-- ARGV[1] id
--
-- Returns: {1, state it had} once deleted; {0, "active"} for a leased task (a worker runs
--          it: cancel it instead, nothing is written); {0, ""} if the task is unknown.
local state = redis.call('HGET', KEYS[6], 'state')
if not state then
    return {0, ''}
end
if redis.call('ZSCORE', KEYS[5], ARGV[1]) then
    return {0, 'active'}
end
if state == 'pending' then
    remove_pending(KEYS[1], KEYS[7], ARGV[1])
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
local flow = flow_of(redis.call('HGET', KEYS[6], 'flow'))
if flow then
    drop_flow(KEYS[8], ARGV[1], flow)
end
local name = redis.call('HGET', KEYS[6], 'name')
redis.call('DEL', KEYS[6])
event(KEYS[9], 'deleted', ARGV[1], name, 'was', state)
return {1, state}
