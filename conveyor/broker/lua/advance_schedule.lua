-- advance_schedule.lua: move a schedule's cursor past the ticks a worker just enqueued,
-- if no other worker moved it first (check-and-set). The enqueue comes before this call,
-- each tick under an idempotency key made of the schedule id and the tick: a worker that
-- dies between the two leaves the cursor behind, and the next worker enqueues the same
-- ticks again, which the keys dedupe, then advances it.
--
-- KEYS[1] index     ZSET schedule id -> next tick due (ms; +inf while paused)
-- KEYS[2] schedule  HASH (see upsert_schedule.lua)
--
-- ARGV[1] schedule id (its member in the index)
-- ARGV[2] the cursor the worker read (ms): ticks at or before it are done
-- ARGV[3] the new cursor (ms)
-- ARGV[4] the next tick after the new cursor (ms)
-- ARGV[5] how many ticks were enqueued
-- ARGV[6] the latest of them (ms), if any
-- ARGV[7] its task id, if any
--
-- Returns: 1 advanced, 0 the cursor had moved (another worker, or a new timing), -1 the
-- schedule is gone (removed meanwhile: it is not written back, and its index entry, if
-- left, is dropped).
local cursor = redis.call('HGET', KEYS[2], 'cursor')
if not cursor then
    if redis.call('EXISTS', KEYS[2]) == 0 then  -- an index entry that outlived its hash
        redis.call('ZREM', KEYS[1], ARGV[1])
    end
    return -1
end
if cursor ~= ARGV[2] then
    return 0
end
redis.call('HSET', KEYS[2], 'cursor', ARGV[3])
if tonumber(ARGV[5]) > 0 then
    redis.call('HSET', KEYS[2], 'last_run', ARGV[6], 'last_task', ARGV[7])
    redis.call('HINCRBY', KEYS[2], 'runs', ARGV[5])
end
-- a schedule paused meanwhile keeps its +inf
if redis.call('HGET', KEYS[2], 'paused') ~= '1' then
    redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
end
return 1
