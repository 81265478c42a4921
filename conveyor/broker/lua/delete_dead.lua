-- delete_dead.lua: delete dead letters and their records.
--
-- KEYS[1] dead         ZSET id -> time of death (ms)
-- KEYS[2] task prefix  (task hashes are KEYS[2] .. id)
-- KEYS[3] events       STREAM the queue's state changes (see prelude.lua)
--
-- ARGV[1..] ids (the caller bounds their number)
--
-- Returns: how many dead letters were deleted.
local deleted = 0
for _, id in ipairs(ARGV) do
    if redis.call('ZREM', KEYS[1], id) == 1 then
        local name = redis.call('HGET', KEYS[2] .. id, 'name')
        redis.call('DEL', KEYS[2] .. id)
        event(KEYS[3], 'deleted', id, name, 'was', 'dead')
        deleted = deleted + 1
    end
end
return deleted
