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
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    or redis.call('HGET', KEYS[5], 'token') ~= ARGV[2] then
    return ''
end
local now = now_ms()
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[3] == '1' then
    local crashes = counter_or_zero(KEYS[5], 'crashes') + 1
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
local priority = stored_priority(KEYS[5])
redis.call('HSET', KEYS[5], 'state', 'pending')
redis.call('ZADD', KEYS[2], pending_score(priority, now), ARGV[1])
wake(KEYS[4])
return 'pending'
