-- claim.lua: lease up to N pending tasks of one queue to a worker (Reliable Queue Pattern).
--
-- KEYS[1] pending      ZSET  id -> priority band + enqueue time
-- KEYS[2] active       ZSET  id -> lease deadline (ms)
-- KEYS[3] paused       STRING present while the queue is paused
-- KEYS[4] dead         ZSET  id -> time of death (ms), for records found corrupt
-- KEYS[5] signal       LIST  wake-up token; re-pushed while work remains, so the next
--                            idle worker wakes too (a chain, not a thundering herd)
-- KEYS[6] task prefix  (task hashes are KEYS[6] .. id)
-- KEYS[7] request      LIST  ids this claim request leased, kept for one lease: a client
--                            retry of the same request (its reply was lost) gets the same
--                            tasks back instead of orphaning them and claiming more
--
-- ARGV[1] most tasks to claim
-- ARGV[2] lease (ms)
-- ARGV[3] worker id
-- ARGV[4] "1" if the worker is idle and may take a suspect: a task that lost its worker
--         before (crashes > 0), which is then claimed alone; "0" skips suspects
-- ARGV[5] retention of a record found corrupt and dead-lettered (ms)
--
-- Returns: {now, suspects skipped (0|1), then per task: id, token, attempts, name, args,
--          kwargs, failures, crashes, max_retries, timeout, enqueued_at, due_at}.
-- Each claim increments the task's fencing token; completions must present it.
-- Suspects run alone so a poison pill that kills its process takes no innocent task
-- with it; a busy worker that skipped one drains, then claims it idle.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {now, 0}
local fields = {'name', 'args', 'kwargs', 'failures', 'crashes', 'max_retries', 'timeout',
    'enqueued_at', 'due_at'}

local function emit(id, key, token, attempts)
    out[#out + 1] = id
    out[#out + 1] = token
    out[#out + 1] = attempts
    local values = redis.call('HMGET', key, unpack(fields))
    for f = 1, #fields do
        out[#out + 1] = values[f]
    end
end

if redis.call('EXISTS', KEYS[7]) == 1 then
    for _, id in ipairs(redis.call('LRANGE', KEYS[7], 0, -1)) do
        local key = KEYS[6] .. id
        if redis.call('ZSCORE', KEYS[2], id) and redis.call('HGET', key, 'worker') == ARGV[3] then
            local held = redis.call('HMGET', key, 'token', 'attempts')
            emit(id, key, tonumber(held[1]), tonumber(held[2]))
        end
    end
    return out
end
if redis.call('EXISTS', KEYS[3]) == 1 then
    return out
end
local candidates = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local deadline = now + tonumber(ARGV[2])
local may_take_suspect = ARGV[4] == '1'
local taken = 0
for _, id in ipairs(candidates) do
    local key = KEYS[6] .. id
    local kind = redis.call('TYPE', key)['ok']
    if kind ~= 'hash' then
        -- 'none': the record expired or was deleted, the index entry is dropped;
        -- anything else is corrupt and kept in the dead set for inspection
        redis.call('ZREM', KEYS[1], id)
        if kind ~= 'none' then
            redis.call('ZADD', KEYS[4], now, id)
        end
    else
        local suspect = (tonumber(redis.call('HGET', key, 'crashes')) or 0) > 0
        if suspect and not (may_take_suspect and taken == 0) then
            out[2] = 1
        else
            redis.call('ZREM', KEYS[1], id)
            -- validate the counters before any write, so a corrupt record cannot abort
            -- the script half way (Redis does not roll back a failed script)
            local intact = true
            for _, value in ipairs(redis.call('HMGET', key, 'token', 'attempts')) do
                -- exactly what HINCRBY accepts: no sign, no leading zero, no fraction
                if value and not (value == '0' or (#value <= 15 and string.match(value, '^[1-9]%d*$'))) then
                    intact = false
                end
            end
            if intact then
                local token = redis.call('HINCRBY', key, 'token', 1)
                local attempts = redis.call('HINCRBY', key, 'attempts', 1)
                redis.call('HSET', key, 'state', 'active', 'started_at', now, 'worker', ARGV[3])
                redis.call('ZADD', KEYS[2], deadline, id)
                redis.call('RPUSH', KEYS[7], id)
                emit(id, key, token, attempts)
                taken = taken + 1
            else
                -- a counter that is not a number: the record is corrupt, keep it for inspection
                redis.call('HSET', key, 'state', 'dead', 'reason', 'corrupt record', 'finished_at', now)
                redis.call('PEXPIRE', key, ARGV[5])
                redis.call('ZADD', KEYS[4], now, id)
            end
            if suspect then
                break
            end
        end
    end
end
if taken > 0 then
    redis.call('PEXPIRE', KEYS[7], ARGV[2])
end
if taken > 0 and redis.call('ZCARD', KEYS[1]) > 0 then
    redis.call('LPUSH', KEYS[5], 1)
    redis.call('LTRIM', KEYS[5], 0, 0)
end
return out
