-- enqueue.lua: store new tasks of one queue and make them pending or scheduled.
--
-- KEYS[1] pending      ZSET  id -> priority band + enqueue time: (100 - priority) * 2^42 + ms,
--                            a Lua number that Redis formats with %.17g, exact below 2^53;
--                            new tasks of any priority but the default
-- KEYS[2] scheduled    ZSET  id -> due time (ms)
-- KEYS[3] signal       LIST  wake-up token for idle workers (kept at one element)
-- KEYS[4] task prefix  (not a key: task hashes are KEYS[4] .. id, same {queue} slot)
-- KEYS[5] ready        LIST  ULIDs of pending tasks of the default priority, oldest first
-- KEYS[6] flow prefix  (flow-control keys, see prelude.lua)
-- KEYS[7] events       STREAM the queue's state changes (see prelude.lua)
-- KEYS[8..] per task in order, its idempotency key then its unique key, when it has them
--
-- ARGV[1] idempotency window (ms)
-- ARGV[2..] per task: id, delay ms, priority, flags (1: an idempotency key, 2: a unique
--           key, 4: a fair group), then for flag 2 the unique mode (skip, replace,
--           throttle) and the throttle window (ms), for flag 4 the group; then a field
--           count n and n field/value pairs for the task hash, the first its name
--
-- Returns: flat {id, replayed (0|1), state, ...} per task; a replay returns the first
--          task's id and its state now ("" if its record is gone); so does a unique key
--          held by a live task (a `replace` gives that task the new arguments and delay).
-- A grouped task's pending score is its group's virtual start, not its time: each group's
-- tasks are numbered on from the later of its last task and the queue's virtual time (the
-- start of the last grouped task claimed), so claims go round the groups (start-time
-- fair queuing) and a group that arrives late is not behind the others' backlogs.
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
local idem = 8

-- a live task holding the unique key `lock`, or nil. `replace` gives a task that has not
-- started the new arguments (fields first..last of ARGV) and due time.
local function unique_holder(lock, mode, delay, first, last)
    local holder = redis.call('GET', lock)
    if not holder or mode == 'throttle' then
        return holder
    end
    local key = KEYS[4] .. holder
    local state = redis.call('HGET', key, 'state')
    if not is_live(state) then
        return nil  -- ended without releasing it (its record expired): take it over
    end
    if mode ~= 'replace' then
        return holder
    end
    if state ~= 'pending' and state ~= 'scheduled' then
        return nil  -- it started: the new task is enqueued and takes the key over
    end
    -- the new arguments written first (at maxmemory, a refused write changes nothing)
    local absent = {args = true, kwargs = true}
    for f = first, last, 2 do
        if absent[ARGV[f]] then
            redis.call('HSET', key, ARGV[f], ARGV[f + 1])
            absent[ARGV[f]] = nil
        end
    end
    for field in pairs(absent) do
        redis.call('HDEL', key, field)
    end
    remove_pending(KEYS[1], KEYS[5], holder)
    redis.call('ZREM', KEYS[2], holder)
    local flow = flow_of(redis.call('HGET', key, 'flow'))
    if flow and flow.c then  -- it may be waiting for a slot: it is indexed anew below
        redis.call('LREM', KEYS[6] .. 'waiting:' .. flow.c, 0, holder)
    end
    local now_state = 'pending'
    if delay > 0 then
        now_state = 'scheduled'
        redis.call('HSET', key, 'state', 'scheduled', 'due_at', clock() + delay)
        redis.call('ZADD', KEYS[2], clock() + delay, holder)
    else
        redis.call('HSET', key, 'state', 'pending')
        redis.call('HDEL', key, 'due_at')
        redis.call('ZADD', KEYS[1], pending_score(stored_priority(key), clock()), holder)
    end
    event(KEYS[7], 'replaced', holder, ARGV[first + 1], 'state', now_state)
    return holder
end

-- the pending score of a new task of fair group `group` (see the contract above)
local function fair_score(group, priority)
    local vtime_key, groups = KEYS[6] .. 'vtime', KEYS[6] .. 'groups'
    local vtime = tonumber(redis.call('GET', vtime_key))
    if not vtime then
        vtime = clock()
        redis.call('SET', vtime_key, vtime)
    end
    local start = math.max(tonumber(redis.call('ZSCORE', groups, group)) or vtime, vtime)
    redis.call('ZADD', groups, start + 1, group)
    return pending_score(priority, start)
end
-- the new pending tasks, written at the end in one call per index
local ready, banded = {}, {}  -- ready entries; score, id pairs
local events = event_batch(KEYS[7])
while i <= #ARGV do
    local id, delay, priority = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    local flags = tonumber(ARGV[i + 3])
    local has_idem, unique_mode, unique_window, group = flags % 2 == 1, nil, nil, nil
    i = i + 4
    if flags % 4 >= 2 then
        unique_mode, unique_window = ARGV[i], tonumber(ARGV[i + 1])
        i = i + 2
    end
    if flags >= 4 then
        group = ARGV[i]
        i = i + 1
    end
    local nfields = tonumber(ARGV[i])
    local first = i + 1
    i = first + 2 * nfields
    local existing = false
    if has_idem then
        existing = redis.call('GET', KEYS[idem])
        if not existing then
            redis.call('SET', KEYS[idem], id, 'PX', window)
        end
        idem = idem + 1
    end
    if unique_mode then
        if not existing then
            existing = unique_holder(KEYS[idem], unique_mode, delay, first, first + 2 * nfields - 1)
            if not existing and redis.call('EXISTS', KEYS[4] .. id) == 0 then
                if unique_mode == 'throttle' then
                    redis.call('SET', KEYS[idem], id, 'PX', unique_window)
                else
                    redis.call('SET', KEYS[idem], id)
                end
            end
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
            events.add('scheduled', id, ARGV[first + 1], 'due_at', clock() + delay)
        else
            redis.call('HSET', key, 'state', state, unpack(ARGV, first, last))
            events.add('enqueued', id, ARGV[first + 1])
            if group then
                banded[#banded + 1] = fair_score(group, priority)
                banded[#banded + 1] = id
            elseif priority == 0 then
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
events.close()
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
