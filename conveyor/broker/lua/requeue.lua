-- requeue.lua: give a claimed task back before its lease runs out.
-- Used by a stopping worker for tasks it could not finish (no crash counted), and when
-- the pool process running a task died (a crash, counted like a lost lease).
--
-- KEYS[1] active   ZSET id -> lease deadline (ms)
-- KEYS[2] pending  ZSET id -> priority band + time
-- KEYS[3] dead     ZSET id -> time of death (ms)
-- KEYS[4] signal   LIST wake-up token for idle workers
-- KEYS[5] task     HASH the task record
--
-- ARGV[1] id
-- ARGV[2] fencing token of the claim
-- ARGV[3] "1" if the task's process crashed, else "0"
-- ARGV[4] crashes after which the task is dead ("worker lost")
-- ARGV[5] retention of a dead record (ms)
--
-- Returns: "pending", "dead", or "" when the token is stale (nothing is written).
local function counter(key, field)
    -- a corrupt count (text, negative, fractional, NaN, huge) reads as 0, never aborts
    local n = tonumber(redis.call('HGET', key, field)) or 0
    if n ~= n or n < 0 or n > 1e15 then
        n = 0
    end
    return math.floor(n)
end

if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    or redis.call('HGET', KEYS[5], 'token') ~= ARGV[2] then
    return ''
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[3] == '1' then
    local crashes = counter(KEYS[5], 'crashes') + 1
    redis.call('HSET', KEYS[5], 'crashes', crashes)
    if crashes >= tonumber(ARGV[4]) then
        local worker = redis.call('HGET', KEYS[5], 'worker') or ''
        local err = cjson.encode({type = 'WorkerLostError',
            message = 'the process running it died ' .. crashes .. ' times; last worker ' .. worker})
        redis.call('HSET', KEYS[5], 'state', 'dead', 'reason', 'worker lost', 'error', err,
            'finished_at', now)
        redis.call('PEXPIRE', KEYS[5], ARGV[5])
        redis.call('ZADD', KEYS[3], now, ARGV[1])
        return 'dead'
    end
end
local priority = math.min(100, math.max(-100, tonumber(redis.call('HGET', KEYS[5], 'priority')) or 0))
redis.call('HSET', KEYS[5], 'state', 'pending')
redis.call('ZADD', KEYS[2], (100 - priority) * 4398046511104 + now, ARGV[1])
redis.call('LPUSH', KEYS[4], 1)
redis.call('LTRIM', KEYS[4], 0, 0)
return 'pending'
