-- trim_dead.lua: keep the dead-letter queue within its age and size bounds.
--
-- KEYS[1] dead         ZSET id -> time of death (ms)
-- KEYS[2] task prefix  (task hashes are KEYS[2] .. id)
--
-- ARGV[1] maximum age (ms)
-- ARGV[2] maximum size
-- ARGV[3] most entries to drop in this call
--
-- Returns: how many dead letters were dropped.
local now = now_ms()
local limit = tonumber(ARGV[3])
local victims = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]),
    'LIMIT', 0, limit)
local excess = redis.call('ZCARD', KEYS[1]) - #victims - tonumber(ARGV[2])
if excess > 0 and #victims < limit then
    local oldest = redis.call('ZRANGE', KEYS[1], #victims, #victims + math.min(excess, limit - #victims) - 1)
    for _, id in ipairs(oldest) do
        victims[#victims + 1] = id
    end
end
for _, id in ipairs(victims) do
    redis.call('ZREM', KEYS[1], id)
    redis.call('DEL', KEYS[2] .. id)
end
return #victims
