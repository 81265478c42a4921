-- replay.lua: requeue dead letters as fresh pending tasks (retry and crash budgets reset).
--
-- KEYS[1] dead         ZSET id -> time of death (ms)
-- KEYS[2] pending      ZSET id -> priority band + time
-- KEYS[3] signal       LIST wake-up token for idle workers
-- KEYS[4] task prefix  (task hashes are KEYS[4] .. id)
--
-- ARGV[1..] ids (the caller bounds their number)
--
-- Returns: the ids replayed (an id not in the dead-letter queue is skipped).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local replayed = {}
for _, id in ipairs(ARGV) do
    if redis.call('ZREM', KEYS[1], id) == 1 then
        local key = KEYS[4] .. id
        if redis.call('TYPE', key)['ok'] == 'hash' then
            local priority = math.min(100, math.max(-100, tonumber(redis.call('HGET', key, 'priority')) or 0))
            redis.call('PERSIST', key)
            redis.call('HDEL', key, 'reason', 'finished_at')
            redis.call('HSET', key, 'state', 'pending', 'failures', 0, 'crashes', 0)
            redis.call('ZADD', KEYS[2],
                (100 - priority) * 4398046511104 + now, id)
            replayed[#replayed + 1] = id
        end
    end
end
if #replayed > 0 then
    redis.call('LPUSH', KEYS[3], 1)
    redis.call('LTRIM', KEYS[3], 0, 0)
end
return replayed
