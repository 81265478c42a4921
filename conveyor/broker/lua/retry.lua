-- retry.lua: record a failed attempt and schedule the next one after its backoff.
--
-- KEYS[1] active     ZSET id -> lease deadline (ms)
-- KEYS[2] scheduled  ZSET id -> due time (ms)
-- KEYS[3] task       HASH the task record
-- KEYS[4] retrying   ZSET id -> due time (ms): the retries among `scheduled`, counted apart
-- KEYS[5] pending    ZSET where a task waiting for a released concurrency slot goes
-- KEYS[6] signal     LIST wake-up token for idle workers
-- KEYS[7] flow prefix  (flow-control keys, see prelude.lua)
-- KEYS[8] task prefix  (task hashes, for a task waiting for a slot)
-- KEYS[9] events     STREAM the queue's state changes (see prelude.lua)
--
-- ARGV[1] id
-- ARGV[2] fencing token of the claim
-- ARGV[3] delay before the next attempt (ms)
-- ARGV[4] error (JSON: type, message, traceback)
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
    return (done[1] == ARGV[2] and done[2] == 'retrying') and 1 or 0
end
local now = now_ms()
local due = now + tonumber(ARGV[3])
redis.call('ZREM', KEYS[1], ARGV[1])
archive_attempt(KEYS[3], now, 'retried', ARGV[4])
redis.call('HSET', KEYS[3], 'failures', counter_or_zero(KEYS[3], 'failures') + 1)
redis.call('HSET', KEYS[3], 'state', 'retrying', 'error', ARGV[4], 'due_at', due)
redis.call('ZADD', KEYS[2], due, ARGV[1])
redis.call('ZADD', KEYS[4], due, ARGV[1])
event(KEYS[9], 'retrying', ARGV[1], redis.call('HGET', KEYS[3], 'name'), 'due_at', due)
release_held(KEYS[3], KEYS[7], KEYS[8], KEYS[5], KEYS[6], ARGV[1], false, now)
return 1
