-- extend_leases.lua: renew the leases a worker still holds, in one call per beat.
--
-- KEYS[1] active       ZSET  id -> lease deadline (ms)
-- KEYS[2] task prefix  (task hashes are KEYS[2] .. id)
--
-- ARGV[1] lease (ms)
-- ARGV[2..] pairs of id, fencing token
--
-- Returns: {the ids whose lease is lost (recovered or re-claimed by someone else),
--           the ids being cancelled (renewed too: their worker is told to stop them, the
--           fallback of a lost message on the queue's cancel channel)}.
--
-- At maxmemory (noeviction) Redis refuses a script's first write when that command may
-- grow memory, as ZADD may even with XX, but not a ZREM, and lets a script that has
-- written finish. Each lease is renewed as ZREM then ZADD of the same member: memory
-- stays as it was, and leases are renewed while Redis is full.
local now = now_ms()
local deadline = now + tonumber(ARGV[1])
local lost, cancelling = {}, {}
for i = 2, #ARGV, 2 do
    local id = ARGV[i]
    -- the record is read only for a lease still in the set, as before any state was read
    local held = redis.call('ZSCORE', KEYS[1], id)
        and redis.call('HMGET', KEYS[2] .. id, 'token', 'state')
    if held and held[1] == ARGV[i + 1] then
        redis.call('ZREM', KEYS[1], id)
        redis.call('ZADD', KEYS[1], deadline, id)
        if held[2] == 'cancelling' then
            cancelling[#cancelling + 1] = id
        end
    else
        lost[#lost + 1] = id
    end
end
return {lost, cancelling}
