-- claim.lua: lease up to N pending tasks of one queue to a worker (Reliable Queue Pattern).
--
-- KEYS[1] pending      ZSET  id -> priority band + enqueue time
-- KEYS[2] active       ZSET  id -> lease deadline (ms)
-- KEYS[3] paused       STRING present while the queue is paused
-- KEYS[4] dead         ZSET  id -> time of death (ms), for records found corrupt
-- KEYS[5] signal       LIST  wake-up token; re-pushed while work remains, so the next
--                            idle worker wakes too (a chain, not a thundering herd)
-- KEYS[6] task prefix  (task hashes are KEYS[6] .. id)
--
-- ARGV[1] most tasks to claim
-- ARGV[2] lease (ms)
-- ARGV[3] worker id
--
-- Returns: {now, then per task: id, token, attempts, name, args, kwargs, failures,
--          crashes, max_retries, timeout, enqueued_at, due_at}.
-- Each claim increments the task's fencing token; completions must present it.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {now}
if redis.call('EXISTS', KEYS[3]) == 1 then
    return out
end
local popped = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[1]))
local deadline = now + tonumber(ARGV[2])
for p = 1, #popped, 2 do
    local id = popped[p]
    local key = KEYS[6] .. id
    local kind = redis.call('TYPE', key)['ok']
    if kind == 'hash' then
        local token = redis.pcall('HINCRBY', key, 'token', 1)
        if type(token) == 'number' then
            local attempts = redis.call('HINCRBY', key, 'attempts', 1)
            redis.call('HSET', key, 'state', 'active', 'started_at', now, 'worker', ARGV[3])
            redis.call('ZADD', KEYS[2], deadline, id)
            out[#out + 1] = id
            out[#out + 1] = token
            out[#out + 1] = attempts
            local fields = redis.call('HMGET', key, 'name', 'args', 'kwargs', 'failures',
                'crashes', 'max_retries', 'timeout', 'enqueued_at', 'due_at')
            for f = 1, 9 do
                out[#out + 1] = fields[f]
            end
        else
            -- a token that is not a number: the record is corrupt, keep it for inspection
            redis.call('HSET', key, 'state', 'dead', 'reason', 'corrupt record', 'finished_at', now)
            redis.call('ZADD', KEYS[4], now, id)
        end
    elseif kind ~= 'none' then
        redis.call('ZADD', KEYS[4], now, id)
    end
    -- kind 'none': the record expired or was deleted; the index entry is simply dropped
end
if #popped > 0 and redis.call('ZCARD', KEYS[1]) > 0 then
    redis.call('LPUSH', KEYS[5], 1)
    redis.call('LTRIM', KEYS[5], 0, 0)
end
return out
