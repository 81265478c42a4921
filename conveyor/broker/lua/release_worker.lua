-- release_worker.lua: take back at once the tasks a dead worker leased in one queue, as
-- recover.lua does when a lease runs out: one crash more, then pending (or dead, for a
-- poison pill). The reaper calls it once none of the worker's connections is left in
-- Redis; the fencing token makes it safe even if the worker was alive after all.
-- Reads the leases in windows, so no call holds Redis for long on a large queue.
--
-- KEYS[1] active       ZSET id -> lease deadline (ms)
-- KEYS[2] pending      ZSET id -> priority band + time
-- KEYS[3] dead         ZSET id -> time of death (ms)
-- KEYS[4] signal       LIST wake-up token for idle workers
-- KEYS[5] task prefix  (task hashes are KEYS[5] .. id)
-- KEYS[6] flow prefix  (flow-control keys, see prelude.lua)
-- KEYS[7] events       STREAM the queue's state changes (see prelude.lua)
--
-- ARGV[1] worker id
-- ARGV[2] crashes after which a task is dead ("worker lost")
-- ARGV[3] retention of a dead record (ms)
-- ARGV[4] where this window starts in the active set (0 for the first call)
-- ARGV[5] most leases to read in this call
-- ARGV[6] retention of a cancelled record (ms)
--
-- Returns: {start of the next window, or -1 when the set is read through,
--           then flat id, "pending"|"dead"|"cancelled", ...}. A task being cancelled
--           ends cancelled: it is never run again.
local now = now_ms()
local start = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local leases = redis.call('ZRANGE', KEYS[1], start, start + window - 1)
local out = {#leases < window and -1 or start + window}
local woke = false
for _, id in ipairs(leases) do
    local key = KEYS[5] .. id
    if redis.call('TYPE', key)['ok'] == 'hash' and redis.call('HGET', key, 'worker') == ARGV[1] then
        redis.call('ZREM', KEYS[1], id)
        local outcome = 'cancelled'
        if redis.call('HGET', key, 'state') == 'cancelling' then
            end_cancelled(key, id, now, ARGV[6], KEYS[6], KEYS[5], KEYS[2], KEYS[4], KEYS[7])
        else
            outcome = after_crash(key, id, KEYS[2], KEYS[3], ARGV[2], ARGV[3], now,
                'its worker was lost', KEYS[6], KEYS[7])
            woke = woke or outcome == 'pending'
            release_held(key, KEYS[6], KEYS[5], KEYS[2], KEYS[4], id, outcome == 'dead', now)
        end
        out[#out + 1] = id
        out[#out + 1] = outcome
    end
end
if out[1] ~= -1 then
    -- the leases taken back shifted the rest of the set left
    out[1] = out[1] - (#out - 1) / 2
end
if woke then
    wake(KEYS[4])
end
return out
