-- cancel.lua: cancel a task. One that has not started (pending, scheduled or waiting to
-- retry) ends cancelled at once. A running one (active) becomes `cancelling`: it keeps its
-- lease, and its worker, told on the queue's cancel channel (or, if that message is lost,
-- by its next lease renewal), stops the handler and ends it cancelled (end_cancel.lua).
--
-- KEYS[1] pending    ZSET id -> priority band + time
-- KEYS[2] scheduled  ZSET id -> due time (ms)
-- KEYS[3] task       HASH the task record
-- KEYS[4] retrying   ZSET id -> due time (ms)
-- KEYS[5] ready      LIST pending ids of the default priority
-- KEYS[6] flow prefix (flow-control keys, see prelude.lua)
-- KEYS[7] cancels    pub/sub channel of the queue's workers (message: the task id)
-- KEYS[8] active     ZSET id -> lease deadline (ms)
-- KEYS[9] events     STREAM the queue's state changes (see prelude.lua)
--
-- ARGV[1] id
-- ARGV[2] retention of the cancelled record (ms)
--
-- Returns: {1, state it had} once cancelled, or cancelling when it had "active" (or
--          "cancelling": the request is published again); {0, state} if its state forbids
--          it; {0, ""} if the task is unknown.
local state = redis.call('HGET', KEYS[3], 'state')
if not state then
    return {0, ''}
end
if state == 'active' or state == 'cancelling' then
    -- at maxmemory Redis refuses a script's first write only when it may grow memory: the
    -- lease is taken out and put back as it was first (as extend_leases.lua renews it), so
    -- a running task can be cancelled while Redis is full
    local lease = redis.call('ZSCORE', KEYS[8], ARGV[1])
    if lease then
        redis.call('ZREM', KEYS[8], ARGV[1])
        redis.call('ZADD', KEYS[8], lease, ARGV[1])
    end
    redis.call('HSET', KEYS[3], 'state', 'cancelling')
    redis.call('PUBLISH', KEYS[7], ARGV[1])
    if state == 'active' then
        event(KEYS[9], 'cancelling', ARGV[1], redis.call('HGET', KEYS[3], 'name'))
    end
    return {1, state}
end
if state ~= 'pending' and state ~= 'scheduled' and state ~= 'retrying' then
    return {0, state}
end
local now = now_ms()
if state == 'pending' then
    remove_pending(KEYS[1], KEYS[5], ARGV[1])
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
local flow = flow_of(redis.call('HGET', KEYS[3], 'flow'))
if flow then
    drop_flow(KEYS[6], ARGV[1], flow)
end
redis.call('HSET', KEYS[3], 'state', 'cancelled', 'finished_at', now)
redis.call('PEXPIRE', KEYS[3], ARGV[2])
event(KEYS[9], 'cancelled', ARGV[1], redis.call('HGET', KEYS[3], 'name'), 'was', state)
return {1, state}
