-- pause_schedule.lua: pause a schedule (no tick fires) or resume it. Ticks that came due
-- while it was paused are not fired on resuming, whatever its misfire policy: resuming
-- counts ticks from now.
--
-- KEYS[1] index     ZSET schedule id -> next tick due (ms; +inf while paused)
-- KEYS[2] schedule  HASH (see upsert_schedule.lua)
--
-- ARGV[1] schedule id (its member in the index)
-- ARGV[2] 1 to pause, 0 to resume
-- ARGV[3] now (ms, Redis' clock as the caller read it)
-- ARGV[4] the first tick after now (ms)
--
-- Returns: 1 done (or already so), 0 no such schedule.
if redis.call('EXISTS', KEYS[2]) == 0 then
    return 0
end
if ARGV[2] == '1' then
    redis.call('HSET', KEYS[2], 'paused', 1)
    redis.call('ZADD', KEYS[1], '+inf', ARGV[1])
elseif redis.call('HGET', KEYS[2], 'paused') == '1' then
    redis.call('HSET', KEYS[2], 'paused', 0, 'cursor', ARGV[3])
    redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
end
return 1
