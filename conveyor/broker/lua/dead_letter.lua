-- dead_letter.lua: end a task after its last failed attempt.
--
-- KEYS[1] active  ZSET id -> lease deadline (ms)
-- KEYS[2] dead    ZSET id -> time of death (ms)
-- KEYS[3] task    HASH the task record
-- KEYS[4] pending ZSET where a task waiting for a released concurrency slot goes
-- KEYS[5] signal  LIST wake-up token for idle workers
-- KEYS[6] flow prefix  (flow-control keys, see prelude.lua)
-- KEYS[7] task prefix  (task hashes, for a task waiting for a slot)
-- KEYS[8] events  STREAM the queue's state changes (see prelude.lua)
--
-- ARGV[1] id
-- ARGV[2] fencing token of the claim
-- ARGV[3] reason ("error", "timeout", "unknown task", "corrupt record", ...)
-- ARGV[4] error (JSON: type, message, traceback)
-- ARGV[5] retention of the record (ms)
-- ARGV[6] final state: "dead" (kept in the dead-letter queue) or "failed" (not kept)
--
-- Returns: 1, or 0 when the token is stale or the task is no longer active (being
-- cancelled): nothing is written.
-- A repeat of a call that already succeeded (a client retry after a lost reply) is 1.
-- the token and the state fence it: a task being cancelled (`cancelling`) keeps its lease
-- until its worker ends it cancelled, and its late failure must not retry it
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    or redis.call('HGET', KEYS[3], 'token') ~= ARGV[2]
    or redis.call('HGET', KEYS[3], 'state') ~= 'active' then
    local done = redis.call('HMGET', KEYS[3], 'token', 'state')
    return (done[1] == ARGV[2] and done[2] == ARGV[6]) and 1 or 0
end
local now = now_ms()
redis.call('ZREM', KEYS[1], ARGV[1])
archive_attempt(KEYS[3], now, ARGV[6], ARGV[4])
redis.call('HSET', KEYS[3], 'failures', counter_or_zero(KEYS[3], 'failures') + 1)
redis.call('HSET', KEYS[3], 'state', ARGV[6], 'reason', ARGV[3], 'error', ARGV[4],
    'finished_at', now)
redis.call('PEXPIRE', KEYS[3], ARGV[5])
if ARGV[6] == 'dead' then
    redis.call('ZADD', KEYS[2], now, ARGV[1])
end
release_held(KEYS[3], KEYS[6], KEYS[7], KEYS[4], KEYS[5], ARGV[1], true, now)
event(KEYS[8], ARGV[6], ARGV[1], redis.call('HGET', KEYS[3], 'name'), 'reason', ARGV[3])
return 1
