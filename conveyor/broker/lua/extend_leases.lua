-- extend_leases.lua: renew the leases a worker still holds, in one call per beat.
--
-- KEYS[1] active       ZSET  id -> lease deadline (ms)
-- KEYS[2] task prefix  (task hashes are KEYS[2] .. id)
--
-- ARGV[1] lease (ms)
-- ARGV[2..] pairs of id, fencing token
--
-- Returns: the ids whose lease is lost (recovered or re-claimed by someone else).
local now = now_ms()
local deadline = now + tonumber(ARGV[1])
local lost = {}
for i = 2, #ARGV, 2 do
    local id = ARGV[i]
    if redis.call('ZSCORE', KEYS[1], id)
        and redis.call('HGET', KEYS[2] .. id, 'token') == ARGV[i + 1] then
        redis.call('ZADD', KEYS[1], 'XX', deadline, id)
    else
        lost[#lost + 1] = id
    end
end
return lost
