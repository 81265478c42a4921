-- end_cancel.lua: end a task its worker stopped because it was cancelled (`cancelling`):
-- its lease and flow-control holds are released and it ends `cancelled`, never retried.
--
-- KEYS[1] active       ZSET id -> lease deadline (ms)
-- KEYS[2] task         HASH the task record
-- KEYS[3] pending      ZSET where a task waiting for a released concurrency slot goes
-- KEYS[4] signal       LIST wake-up token for idle workers
-- KEYS[5] flow prefix  (flow-control keys, see prelude.lua)
-- KEYS[6] task prefix  (task hashes, for a task waiting for a slot)
-- KEYS[7] events       STREAM the queue's state changes (see prelude.lua)
--
-- ARGV[1] id
-- ARGV[2] fencing token of the claim
-- ARGV[3] retention of the cancelled record (ms)
--
-- Returns: 1, or 0 when the token is stale or the task is not cancelling (nothing is
-- written). A repeat of a call that already succeeded (a client retry) is 1.
local held = redis.call('HMGET', KEYS[2], 'token', 'state')
if held[1] ~= ARGV[2] or held[2] ~= 'cancelling' or not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    return (held[1] == ARGV[2] and held[2] == 'cancelled') and 1 or 0
end
local now = now_ms()
redis.call('ZREM', KEYS[1], ARGV[1])
end_cancelled(KEYS[2], ARGV[1], now, ARGV[3], KEYS[5], KEYS[6], KEYS[3], KEYS[4], KEYS[7])
return 1
