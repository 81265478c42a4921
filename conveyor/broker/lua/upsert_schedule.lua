-- upsert_schedule.lua: create a schedule, or replace its definition, keeping its state.
-- Every worker upserts the schedules its code declares (at start, then each minute), so an
-- unchanged definition must change nothing; a new timing counts ticks from now (the old
-- cursor meant the old ticks), and a paused schedule stays paused.
--
-- KEYS[1] index     ZSET schedule id -> next tick due (ms; +inf while paused)
-- KEYS[2] schedule  HASH spec, timing, origin, cursor, paused, runs, last_run, last_task,
--                        created_at, updated_at, declared_at
--
-- ARGV[1] schedule id (its member in the index)
-- ARGV[2] spec: the definition as canonical JSON
-- ARGV[3] timing: what decides the ticks (text)
-- ARGV[4] origin: "code" (a worker declaring it) or "api"
-- ARGV[5] now (ms, Redis' clock as the caller read it)
-- ARGV[6] the first tick after now (ms)
--
-- Returns: "created", "updated" or "unchanged".
local spec = redis.call('HGET', KEYS[2], 'spec')
if ARGV[4] == 'code' then
    redis.call('HSET', KEYS[2], 'declared_at', ARGV[5])
end
if spec == ARGV[2] then
    redis.call('HSET', KEYS[2], 'origin', ARGV[4])
    return 'unchanged'
end
redis.call('HSET', KEYS[2], 'spec', ARGV[2], 'origin', ARGV[4], 'updated_at', ARGV[5])
if not spec then
    redis.call('HSET', KEYS[2], 'timing', ARGV[3], 'cursor', ARGV[5], 'paused', 0,
        'runs', 0, 'created_at', ARGV[5])
    redis.call('ZADD', KEYS[1], ARGV[6], ARGV[1])
    return 'created'
end
if redis.call('HGET', KEYS[2], 'timing') ~= ARGV[3] then
    redis.call('HSET', KEYS[2], 'timing', ARGV[3], 'cursor', ARGV[5])
    if redis.call('HGET', KEYS[2], 'paused') ~= '1' then
        redis.call('ZADD', KEYS[1], ARGV[6], ARGV[1])
    end
end
return 'updated'
