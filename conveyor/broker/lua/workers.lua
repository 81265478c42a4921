-- workers.lua: the descriptions of live workers; forgets those whose description expired.
--
-- KEYS[1] index          ZSET   worker id -> last heartbeat (ms)
-- KEYS[2] worker prefix  (worker descriptions are KEYS[2] .. id, STRING with a TTL)
--
-- ARGV[1] most workers to return
--
-- Returns: the JSON descriptions of live workers.
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local alive = {}
for _, id in ipairs(ids) do
    local info = redis.call('GET', KEYS[2] .. id)
    if info then
        alive[#alive + 1] = info
    else
        redis.call('ZREM', KEYS[1], id)
    end
end
return alive
