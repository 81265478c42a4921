-- enqueue.lua: store new tasks of one queue and make them pending or scheduled.
--
-- KEYS[1] pending      ZSET  id -> priority band + enqueue time: (100 - priority) * 2^42 + ms,
--                            a Lua number that Redis formats with %.17g, exact below 2^53;
--                            new tasks of any priority but the default
-- KEYS[2] scheduled    ZSET  id -> due time (ms)
-- KEYS[3] signal       LIST  wake-up token for idle workers (kept at one element)
-- KEYS[4] task prefix  (not a key: task hashes are KEYS[4] .. id, same {queue} slot)
-- KEYS[5] ready        LIST  ULIDs of pending tasks of the default priority, oldest first
-- KEYS[6..] idempotency keys, in the order of the tasks that carry one
--
-- ARGV[1] idempotency window (ms)
-- ARGV[2..] per task: id, delay ms, priority, has idempotency key (0|1), field count n,
--           then n field/value pairs for the task hash
--
-- Returns: flat {id, replayed (0|1), state, ...} per task; a replay returns the first
--          task's id and its state now ("" if its record is gone).
-- At maxmemory (noeviction) Redis refuses the script at its first write, a SET or HSET
-- that may grow memory, so a refused enqueue has stored nothing; keep the first write so.
-- Redis' clock, read once and only when needed: for a due time or a priority's score. A
-- new task's enqueue time is not stored: its id holds it (the producer's clock).
local now
local function clock()
    now = now or now_ms()
    return now
end
local window = tonumber(ARGV[1])
local out = {}
local i = 2
local idem = 6
-- the new pending tasks, written at the end in one call per index
local ready, banded = {}, {}  -- ready entries; score, id pairs
while i <= #ARGV do
    local id, delay, priority = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    local has_idem, nfields = ARGV[i + 3] == '1', tonumber(ARGV[i + 4])
    local first = i + 5
    i = first + 2 * nfields
    local existing = false
    if has_idem then
        existing = redis.call('GET', KEYS[idem])
        if not existing then
            redis.call('SET', KEYS[idem], id, 'PX', window)
        end
        idem = idem + 1
    end
    local key = KEYS[4] .. id
    if existing and existing ~= id then
        out[#out + 1] = existing
        out[#out + 1] = 1
        out[#out + 1] = redis.call('HGET', KEYS[4] .. existing, 'state') or ''
    elseif redis.call('EXISTS', key) == 1 then
        -- this very task was stored before: a client retry after a lost reply. Writing
        -- again would revive a task that already ran; answer with its state instead.
        out[#out + 1] = id
        out[#out + 1] = 0
        out[#out + 1] = redis.call('HGET', key, 'state') or ''
    else
        -- one HSET per task; unpack is bounded: a task has at most 7 fields
        local last = first + 2 * nfields - 1
        local state = 'pending'
        if delay > 0 then
            state = 'scheduled'
            redis.call('HSET', key, 'state', state, 'due_at', clock() + delay,
                unpack(ARGV, first, last))
            redis.call('ZADD', KEYS[2], clock() + delay, id)
        else
            redis.call('HSET', key, 'state', state, unpack(ARGV, first, last))
            if priority == 0 then
                ready[#ready + 1] = ready_entry(id)
            else
                banded[#banded + 1] = pending_score(priority, clock())
                banded[#banded + 1] = id
            end
        end
        out[#out + 1] = id
        out[#out + 1] = 0
        out[#out + 1] = state
    end
end
if #banded > 0 then
    redis.call('ZADD', KEYS[1], unpack(banded))
end
-- Wake an idle worker, unless the ready list had tasks already: then this queue's wake-up
-- was sent when the list last became non-empty, and a claim that leaves work behind sends
-- the next, so no worker sleeps while it holds tasks.
local was_empty = #banded > 0
if #ready > 0 then
    was_empty = redis.call('RPUSH', KEYS[5], unpack(ready)) == #ready or was_empty
end
if was_empty and redis.call('LLEN', KEYS[3]) == 0 then  -- a read while a wake-up is unclaimed
    redis.call('LPUSH', KEYS[3], 1)
end
return out
