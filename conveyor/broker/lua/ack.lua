-- ack.lua: record a task's success and release its lease.
--
-- KEYS[1] active  ZSET id -> lease deadline (ms)
-- KEYS[2] task    HASH the task record
--
-- ARGV[1] id
-- ARGV[2] fencing token of the claim
-- ARGV[3] result (JSON)
-- ARGV[4] retention of the record (ms)
--
-- Returns: 1, or 0 when the token is stale (the lease was lost; nothing is written).
-- A repeat of a call that already succeeded (a client retry after a lost reply) is 1.
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    or redis.call('HGET', KEYS[2], 'token') ~= ARGV[2] then
    local done = redis.call('HMGET', KEYS[2], 'token', 'state')
    return (done[1] == ARGV[2] and done[2] == 'succeeded') and 1 or 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'state', 'succeeded', 'finished_at', now, 'result', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
