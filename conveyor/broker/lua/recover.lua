-- recover.lua: return tasks whose lease expired (their worker died or stalled) to pending;
-- a task whose workers were lost too often is dead instead (a poison pill).
-- Safe to run from every worker at once: each expired entry is handled by one call only.
--
-- KEYS[1] active       ZSET id -> lease deadline (ms)
-- KEYS[2] pending      ZSET id -> priority band + time
-- KEYS[3] dead         ZSET id -> time of death (ms)
-- KEYS[4] signal       LIST wake-up token for idle workers
-- KEYS[5] task prefix  (task hashes are KEYS[5] .. id)
-- KEYS[6] flow prefix  (flow-control keys, see prelude.lua)
-- KEYS[7] events       STREAM the queue's state changes (see prelude.lua)
--
-- ARGV[1] crashes after which a task is dead ("worker lost")
-- ARGV[2] most leases to recover in this call
-- ARGV[3] retention of a dead record (ms)
-- ARGV[4] retention of a cancelled record (ms)
--
-- Returns: flat {id, "pending"|"dead"|"cancelled"|"gone", ...}. A task being cancelled
-- when its worker was lost ends cancelled: it is never run again.
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
local woke = false
for _, id in ipairs(expired) do
    redis.call('ZREM', KEYS[1], id)
    local key = KEYS[5] .. id
    local outcome = 'gone'
    local is_hash = redis.call('TYPE', key)['ok'] == 'hash'
    if is_hash and redis.call('HGET', key, 'state') == 'cancelling' then
        outcome = 'cancelled'
        end_cancelled(key, id, now, ARGV[4], KEYS[6], KEYS[5], KEYS[2], KEYS[4], KEYS[7])
    elseif is_hash then
        outcome = after_crash(key, id, KEYS[2], KEYS[3], ARGV[1], ARGV[3], now,
            'its worker was lost', KEYS[6], KEYS[7])
        woke = woke or outcome == 'pending'
        release_held(key, KEYS[6], KEYS[5], KEYS[2], KEYS[4], id, outcome == 'dead', now)
    end
    out[#out + 1] = id
    out[#out + 1] = outcome
end
if woke then
    wake(KEYS[4])
end
return out
