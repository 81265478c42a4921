-- progress.lua: keep what a running handler reports, its progress and/or its checkpoint,
-- and renew its lease (a handler reporting progress is alive).
--
-- KEYS[1] active  ZSET id -> lease deadline (ms)
-- KEYS[2] task    HASH the task record
-- KEYS[3] events  STREAM the queue's state changes (see prelude.lua)
--
-- ARGV[1] id
-- ARGV[2] fencing token of the claim
-- ARGV[3] lease (ms)
-- ARGV[4] progress (JSON object without its time: {"fraction": .., "message": ..}), or ""
-- ARGV[5] checkpoint (JSON), or "" to leave it as it is
--
-- Returns: 1, or 0 when the token is stale or the task is not active (its lease was lost,
-- or it is being cancelled): a late writer never overwrites its successor's state.
local held = redis.call('HMGET', KEYS[2], 'token', 'state')
if held[1] ~= ARGV[2] or held[2] ~= 'active' or not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    return 0
end
local now = now_ms()
-- as extend_leases.lua: ZREM then ZADD renews the lease without growing memory
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
if ARGV[4] ~= '' then
    -- the time is Redis' own, embedded in the object the worker encoded
    local stamped = string.sub(ARGV[4], 1, -2) .. ',"at":' .. now .. '}'
    redis.call('HSET', KEYS[2], 'progress', stamped)
    event(KEYS[3], 'progress', ARGV[1], redis.call('HGET', KEYS[2], 'name'), 'progress', stamped)
end
if ARGV[5] ~= '' then
    redis.call('HSET', KEYS[2], 'checkpoint', ARGV[5])
end
return 1
