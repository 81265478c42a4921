-- fsck_flow.lua: check (and optionally repair) flow-control keys of one queue.
--
-- KEYS[1] active       ZSET id -> lease deadline (ms)
-- KEYS[2] task prefix  (task hashes are KEYS[2] .. id)
-- KEYS[3] flow prefix  (flow-control keys, see prelude.lua)
-- KEYS[4] pending      ZSET where a task waiting for a slot goes when woken
-- KEYS[5] signal       LIST wake-up token for idle workers
--
-- ARGV[1] "1" to repair, "0" to report only
-- ARGV[2] "concurrency" or "unique": what the names below are
-- ARGV[3..] concurrency keys, or unique keys (the caller bounds their number)
--
-- Returns: flat {subject, problem, action, ...}. Problems:
--   "slot held by a task not running"  -> slot released (a waiting task woken)
--   "waiting task not pending"         -> entry dropped
--   "tasks waiting with a free slot"   -> the first woken
--   "unique key of an ended task"      -> key released
-- At most 1000 slots and 1000 waiting entries are read per concurrency key and call.
local repair = ARGV[1] == '1'
local out = {}
local now = nil
local function report(subject, problem, action)
    out[#out + 1] = subject
    out[#out + 1] = problem
    out[#out + 1] = repair and action or ''
end
local function clock()
    now = now or now_ms()
    return now
end
local function check_concurrency(c)
    local slots, waiting = KEYS[3] .. 'slots:' .. c, KEYS[3] .. 'waiting:' .. c
    for _, id in ipairs(redis.call('SRANDMEMBER', slots, 1000)) do
        -- a cancelling task still holds its lease (and slot) until its handler stopped
        local state = redis.call('HGET', KEYS[2] .. id, 'state')
        if (state ~= 'active' and state ~= 'cancelling')
            or not redis.call('ZSCORE', KEYS[1], id) then
            report('slot ' .. c .. ' ' .. id, 'slot held by a task not running', 'released')
            if repair then
                redis.call('SREM', slots, id)
            end
        end
    end
    for _, id in ipairs(redis.call('LRANGE', waiting, 0, 999)) do
        if redis.call('HGET', KEYS[2] .. id, 'state') ~= 'pending' then
            report('waiting ' .. c .. ' ' .. id, 'waiting task not pending', 'dropped')
            if repair then
                redis.call('LREM', waiting, 0, id)
            end
        end
    end
    if redis.call('SCARD', slots) == 0 and redis.call('LLEN', waiting) > 0 then
        report('waiting ' .. c, 'tasks waiting with a free slot', 'woken')
        if repair then
            wake_waiting(KEYS[3], KEYS[2], KEYS[4], KEYS[5], c, clock())
        end
    end
    if repair and redis.call('SCARD', slots) == 0 then
        redis.call('SREM', KEYS[3] .. 'held', c)
    end
    if repair and redis.call('LLEN', waiting) == 0 then
        redis.call('SREM', KEYS[3] .. 'blocked', c)
    end
end
local function check_unique(u)
    local lock = KEYS[3] .. 'unique:' .. u
    local holder = redis.call('GET', lock)
    -- a throttle's key expires by itself
    if holder and redis.call('PTTL', lock) == -1
        and not is_live(redis.call('HGET', KEYS[2] .. holder, 'state')) then
        report('unique ' .. u, 'unique key of an ended task', 'released')
        if repair then
            redis.call('DEL', lock)
        end
    end
end
for i = 3, #ARGV do
    if ARGV[2] == 'concurrency' then
        check_concurrency(ARGV[i])
    else
        check_unique(ARGV[i])
    end
end
return out
