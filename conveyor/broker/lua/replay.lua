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
local now = now_ms()
local replayed = {}
for _, id in ipairs(ARGV) do
    if redis.call('ZREM', KEYS[1], id) == 1 then
        local key = KEYS[4] .. id
        if redis.call('TYPE', key)['ok'] == 'hash' then
            local priority = stored_priority(key)
            redis.call('PERSIST', key)
            redis.call('HDEL', key, 'reason', 'finished_at')
            redis.call('HSET', key, 'state', 'pending', 'failures', 0, 'crashes', 0)
            redis.call('ZADD', KEYS[2], pending_score(priority, now), id)
            replayed[#replayed + 1] = id
        end
    end
end
if #replayed > 0 then
    wake(KEYS[3])
end
return replayed
