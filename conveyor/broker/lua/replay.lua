-- replay.lua: requeue dead letters as fresh pending tasks (retry and crash budgets reset).
--
-- KEYS[1] dead         ZSET id -> time of death (ms)
-- KEYS[2] pending      ZSET id -> priority band + time
-- KEYS[3] signal       LIST wake-up token for idle workers
-- KEYS[4] task prefix  (task hashes are KEYS[4] .. id)
-- KEYS[5] events       STREAM the queue's state changes (see prelude.lua)
--
-- ARGV[1..] ids (the caller bounds their number)
--
-- Returns: the ids replayed (an id not in the dead-letter queue is skipped).
local now = now_ms()
local replayed = {}
for _, id in ipairs(ARGV) do
    if redis.call('ZREM', KEYS[1], id) == 1 and revive(KEYS[4] .. id, id, KEYS[2], now) then
        replayed[#replayed + 1] = id
        event(KEYS[5], 'replayed', id, redis.call('HGET', KEYS[4] .. id, 'name'))
    end
end
if #replayed > 0 then
    wake(KEYS[3])
end
return replayed
