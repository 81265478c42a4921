-- requeue.lua: give a claimed task back before its lease runs out.
-- Used by a stopping worker for tasks it could not finish (no crash counted), and when
-- the pool process running a task died (a crash, counted like a lost lease).
--
-- KEYS[1] active   ZSET id -> lease deadline (ms)
-- KEYS[2] pending  ZSET id -> priority band + time
-- KEYS[3] dead     ZSET id -> time of death (ms)
-- KEYS[4] signal   LIST wake-up token for idle workers
-- KEYS[5] task     HASH the task record
-- KEYS[6] flow prefix  (flow-control keys, see prelude.lua)
-- KEYS[7] task prefix  (task hashes, for a task waiting for a slot)
-- KEYS[8] events       STREAM the queue's state changes (see prelude.lua)
--
-- ARGV[1] id
-- ARGV[2] fencing token of the claim
-- ARGV[3] "1" if the task's process crashed, else "0"
-- ARGV[4] crashes after which the task is dead ("worker lost")
-- ARGV[5] retention of a dead record (ms)
-- ARGV[6] retention of a cancelled record (ms)
--
-- Returns: "pending", "dead", "cancelled" (a task being cancelled is not given back: it
-- ends cancelled), or "" when the token is stale (nothing is written).
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    or redis.call('HGET', KEYS[5], 'token') ~= ARGV[2] then
    return ''
end
local now = now_ms()
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[5], 'state') == 'cancelling' then
    end_cancelled(KEYS[5], ARGV[1], now, ARGV[6], KEYS[6], KEYS[7], KEYS[2], KEYS[4], KEYS[8])
    return 'cancelled'
end
local outcome = 'pending'
if ARGV[3] == '1' then
    outcome = after_crash(KEYS[5], ARGV[1], KEYS[2], KEYS[3], ARGV[4], ARGV[5], now,
        'the process running it died', KEYS[6], KEYS[8])
else
    archive_attempt(KEYS[5], now, 'interrupted', nil)
    to_pending(KEYS[5], ARGV[1], KEYS[2], now, KEYS[6])
    event(KEYS[8], 'requeued', ARGV[1], redis.call('HGET', KEYS[5], 'name'))
end
release_held(KEYS[5], KEYS[6], KEYS[7], KEYS[2], KEYS[4], ARGV[1], outcome == 'dead', now)
if outcome == 'pending' then
    wake(KEYS[4])
end
return outcome
