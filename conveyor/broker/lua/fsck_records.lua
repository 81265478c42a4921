-- fsck_records.lua: check (and optionally repair) task records against the queue's indexes,
-- atomically per call, so a live system never shows a half-done transition to the check.
--
-- KEYS[1] pending      ZSET  id -> priority band + time
-- KEYS[2] active       ZSET  id -> lease deadline (ms)
-- KEYS[3] scheduled    ZSET  id -> due time (ms)
-- KEYS[4] dead         ZSET  id -> time of death (ms)
-- KEYS[5] task prefix  (task hashes are KEYS[5] .. id)
-- KEYS[6] ready        LIST  pending ids of the default priority
-- KEYS[7] flow prefix  (a pending task may wait in its concurrency key's waiting list)
-- KEYS[8] events       STREAM the queue's state changes: a repair that changes a state
--                      writes it, as the script a worker runs would have
--
-- ARGV[1] "1" to repair, "0" to report only
-- ARGV[2] retention (ms) given to a succeeded record that has none
-- ARGV[3] retention (ms) given to a failed record that has none
-- ARGV[4] retention (ms) given to a cancelled record that has none
-- ARGV[5] retention (ms) given to a dead record that has none
-- ARGV[6] grace (ms): a due task is only "stuck" once this late
-- ARGV[7..] per task: its id, then "1" if the caller saw it in the ready list (a pending
--           record seen there is indexed; any other is looked for in the list, from its
--           back, where new tasks are); the caller bounds their number
--
-- Returns: flat {id, problem, action, ...} for each record found wrong. Problems:
--   "active without lease"   state active, not in the active set      -> requeued
--   "cancelling without lease" state cancelling, not in the active set -> cancelled (its
--                            flow-control holds are left to fsck_flow.lua, which runs next)
--   "unindexed"              pending/scheduled/retrying/dead record in no index -> re-indexed
--   "no retention"           finished record without a TTL            -> TTL set
--   "stuck scheduled"        due more than the grace ago, not promoted -> promoted
--   "corrupt record"         not a hash, or no state, and not yet kept in the dead set
--                            -> dead-lettered (kept for inspection, with the dead TTL)
local now = now_ms()
local repair = ARGV[1] == '1'
local out = {}

local function report(id, problem, action)
    out[#out + 1] = id
    out[#out + 1] = problem
    out[#out + 1] = repair and action or ''
end

local function requeue(id, key)
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    to_pending(key, id, KEYS[1], now, KEYS[7])
end

local retention = {succeeded = ARGV[2], failed = ARGV[3], cancelled = ARGV[4], dead = ARGV[5]}

local function check_corrupt(id, key, kind)
    if redis.call('ZSCORE', KEYS[4], id) and kind ~= 'hash' then
        return  -- a non-hash kept in the dead set for inspection: nothing more to do
    end
    report(id, 'corrupt record', 'dead-lettered')
    if repair then
        remove_pending(KEYS[1], KEYS[6], id)
        redis.call('ZREM', KEYS[2], id)
        redis.call('ZREM', KEYS[3], id)
        redis.call('ZADD', KEYS[4], 'NX', now, id)
        if kind == 'hash' then
            redis.call('HSET', key, 'state', 'dead', 'reason', 'corrupt record', 'finished_at', now)
            redis.call('PEXPIRE', key, retention.dead)
            event(KEYS[8], 'dead', id, redis.call('HGET', key, 'name'), 'reason', 'corrupt record')
        end
    end
end

local function check_dead(id, key)
    if not redis.call('ZSCORE', KEYS[4], id) then
        report(id, 'unindexed', 're-indexed')
        if repair then
            redis.call('ZADD', KEYS[4], tonumber(redis.call('HGET', key, 'finished_at')) or now, id)
        end
    end
    if redis.call('PTTL', key) == -1 then
        report(id, 'no retention', 'expires')
        if repair then redis.call('PEXPIRE', key, retention.dead) end
    end
end

local function check_scheduled(id, key)
    local due = redis.call('ZSCORE', KEYS[3], id)
    if not due then
        report(id, 'unindexed', 're-indexed')
        if repair then
            redis.call('ZADD', KEYS[3], tonumber(redis.call('HGET', key, 'due_at')) or now, id)
        end
    elseif tonumber(due) < now - tonumber(ARGV[6]) then
        report(id, 'stuck scheduled', 'promoted')
        if repair then
            requeue(id, key)
            event(KEYS[8], 'due', id, redis.call('HGET', key, 'name'))
        end
    end
end

-- in the pending ZSET, the ready list, or its concurrency key's waiting list
local function listed(id, key, seen)
    if seen == '1' or redis.call('ZSCORE', KEYS[1], id)
        or redis.call('LPOS', KEYS[6], ready_entry(id), 'RANK', -1) then
        return true
    end
    local flow = flow_of(redis.call('HGET', key, 'flow'))
    return flow and flow.c and redis.call('LPOS', KEYS[7] .. 'waiting:' .. flow.c, id)
end
for i = 7, #ARGV, 2 do
    local id = ARGV[i]
    local key = KEYS[5] .. id
    local kind = redis.call('TYPE', key)['ok']
    local state = kind == 'hash' and redis.call('HGET', key, 'state') or false
    if kind == 'none' then
        -- expired or deleted between the scan and this check: nothing to do
    elseif kind ~= 'hash' or not state then
        check_corrupt(id, key, kind)
    elseif state == 'active' and not redis.call('ZSCORE', KEYS[2], id) then
        report(id, 'active without lease', 'requeued')
        if repair then
            requeue(id, key)
            event(KEYS[8], 'requeued', id, redis.call('HGET', key, 'name'))
        end
    elseif state == 'cancelling' and not redis.call('ZSCORE', KEYS[2], id) then
        report(id, 'cancelling without lease', 'cancelled')
        if repair then
            redis.call('HSET', key, 'state', 'cancelled', 'finished_at', now)
            redis.call('PEXPIRE', key, retention.cancelled)
            event(KEYS[8], 'cancelled', id, redis.call('HGET', key, 'name'), 'was', 'cancelling')
        end
    elseif state == 'pending' and not listed(id, key, ARGV[i + 1]) then
        report(id, 'unindexed', 're-indexed')
        if repair then requeue(id, key) end
    elseif state == 'scheduled' or state == 'retrying' then
        check_scheduled(id, key)
    elseif state == 'dead' then
        check_dead(id, key)
    elseif retention[state] and redis.call('PTTL', key) == -1 then
        report(id, 'no retention', 'expires')
        if repair then redis.call('PEXPIRE', key, retention[state]) end
    end
end
return out
