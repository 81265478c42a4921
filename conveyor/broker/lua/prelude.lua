-- prelude.lua: the helpers every script may use; not a script of its own. scripts.py loads
-- each script as one text: `local` lines for the constants Python shares with the scripts
-- (PRIORITY_BAND), the helpers of this file that it calls (directly or through another),
-- then its own file. Each helper is a top-level `local function`, its comments above it,
-- closed by an `end` at column 0; none reads KEYS or ARGV or calls anything at load.

-- Redis' clock in ms; a script calls it once and keeps the value (one TIME per call)
local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- a counter value as a number (0 when absent), or nil when corrupt: digits only, no
-- leading zero, at most 15 of them (exact in a Lua number, and what HINCRBY would accept).
-- For counters a corrupt record must not get past (the fencing token, attempts).
local function counter(value)
    if not value then
        return 0
    end
    if value == '0' or (#value <= 15 and string.match(value, '^[1-9]%d*$')) then
        return tonumber(value)
    end
    return nil
end

-- a record's tally (failures, crashes) about to be incremented: a corrupt count (text,
-- negative, fractional, NaN, huge) reads as 0, so recording an outcome never aborts
local function counter_or_zero(key, field)
    local n = tonumber(redis.call('HGET', key, field)) or 0
    if n ~= n or n < 0 or n > 1e15 then
        n = 0
    end
    return math.floor(n)
end

-- A state change on its queue's event stream (a capped STREAM, see broker/keys.py), written
-- by the script that makes the change, after it: so no event is lost or invented. `kind`
-- says what happened, to task `id` named `name`; `...` adds field/value pairs. MAXLEN ~
-- trims whole nodes of the stream, the cheap way to bound it near EVENTS_MAX_LEN entries.
-- At maxmemory the XADD is never a script's first write, so Redis lets it through.
local function event(stream, kind, id, name, ...)
    redis.call('XADD', stream, 'MAXLEN', '~', EVENTS_MAX_LEN, '*', 'event', kind, 'id', id,
        'task', name or '', ...)
end

-- the events of a script that writes many (a bulk enqueue, a claim, an ack): `add` the
-- first is trimmed as `event` does, the others are appended untrimmed (the XADD alone
-- costs half as much as with its trim), then `close` trims once if there were others (the
-- stream may exceed its cap by one call's events in between). One task: one XADD.
local function event_batch(stream)
    local written = 0
    local batch = {}
    function batch.add(kind, id, name, ...)
        written = written + 1
        if written == 1 then
            event(stream, kind, id, name, ...)
        else
            redis.call('XADD', stream, '*', 'event', kind, 'id', id, 'task', name or '', ...)
        end
    end
    function batch.close()
        if written > 1 then
            redis.call('XTRIM', stream, 'MAXLEN', '~', EVENTS_MAX_LEN)
        end
    end
    return batch
end

-- the pending score: the priority band first (a higher priority, a lower band), then the ms
-- the task became pending, so the lowest score is claimed first
local function pending_score(priority, now)
    return (MAX_PRIORITY - priority) * PRIORITY_BAND + now
end

-- wake one idle worker: a token on the queue's signal list, which holds at most one
local function wake(signal)
    redis.call('LPUSH', signal, 1)
    redis.call('LTRIM', signal, 0, 0)
end

-- the priority kept in a record, clamped to the priority range; absent or not a number: 0
local function stored_priority(key)
    local priority = tonumber(redis.call('HGET', key, 'priority')) or 0
    return math.min(MAX_PRIORITY, math.max(MIN_PRIORITY, priority))
end

-- the attempt that just ended without success, kept in the record's history: field
-- `attempt:<n>` (JSON: when it started, on which worker, when and how it ended, its error),
-- the last ATTEMPT_HISTORY of them. A success writes none: the record's own fields tell it.
-- `error_json` (or nil) is embedded as it is: the worker encoded it.
local function archive_attempt(key, now, outcome, error_json)
    local held = redis.call('HMGET', key, 'attempts', 'started_at', 'worker')
    local n = counter(held[1])
    if not n or n < 1 then
        return
    end
    local entry = cjson.encode({attempt = n, started_at = tonumber(held[2]),
        worker = held[3] or nil, finished_at = now, outcome = outcome})
    if error_json then
        entry = string.sub(entry, 1, -2) .. ',"error":' .. error_json .. '}'
    end
    redis.call('HSET', key, 'attempt:' .. n, entry)
    if n > ATTEMPT_HISTORY then
        redis.call('HDEL', key, 'attempt:' .. (n - ATTEMPT_HISTORY))
    end
end

-- A pending task waits in one of two indexes. A task enqueued at the default priority
-- joins the back of the `ready` LIST: O(1) at any depth and a few bytes an entry, the
-- common case. Any other pending task (another priority, or one back in pending: promoted,
-- requeued, recovered, replayed) is in the `pending` ZSET, by priority band and time, where
-- a claim can skip a suspect in place. A claim takes the ZSET's higher priorities first, then
-- the default priority's, the ZSET's entries in turns with the list, then the lower ones.

-- the entry of a task in its queue's ready list: the ULID of its id (`<queue>:<ULID>`);
-- the queue is the list's own, so it is not repeated in every entry
local function ready_entry(id)
    return string.sub(id, -26)
end

-- a task leaves whichever pending index holds it; the list is searched from its back, where
-- the newest tasks (those most often cancelled or deleted) are
local function remove_pending(pending, ready, id)
    if redis.call('ZREM', pending, id) == 0 then
        redis.call('LREM', ready, -1, ready_entry(id))
    end
end

-- how many tasks are pending, in both indexes
local function pending_count(pending, ready)
    return redis.call('ZCARD', pending) + redis.call('LLEN', ready)
end

-- Flow control. A task that uses it holds a `flow` field (JSON, see broker/records.py):
--   u: its unique key, um: the mode (skip, replace or throttle)
--   c: its concurrency key, cl: that key's limit
--   r: its rate key, rn: tasks per rp ms, rb: burst
--   g: its fair group
-- Its keys are named from the queue's flow prefix (KEYS) as broker/keys.py names them;
-- a task without the field never touches them.

-- the flow field decoded, or nil when absent or unreadable (a corrupt field disables flow
-- control for its task rather than aborting every script that meets it)
local function flow_of(raw)
    if not raw then
        return nil
    end
    local ok, flow = pcall(cjson.decode, raw)
    if ok and type(flow) == 'table' then
        return flow
    end
    return nil
end

-- the pending score of a task back in pending, at its priority: from now, or, for a task of
-- a fair group (see enqueue.lua) when the caller knows the queue's flow prefix, from the
-- queue's virtual time, so it is claimed next as an ungrouped task back in pending is,
-- not behind every group's backlog
local function reentry_score(key, prefix, now)
    local start = now
    if prefix then
        local flow = flow_of(redis.call('HGET', key, 'flow'))
        if flow and flow.g then
            start = tonumber(redis.call('GET', prefix .. 'vtime')) or now
        end
    end
    return pending_score(stored_priority(key), start)
end

-- a task back in pending (its lease already removed), at its priority, from now (`prefix`:
-- the queue's flow prefix, or nil; see reentry_score)
local function to_pending(key, id, pending, now, prefix)
    redis.call('HSET', key, 'state', 'pending')
    redis.call('ZADD', pending, reentry_score(key, prefix, now), id)
end

-- a dead letter (already out of the dead set) back to pending as a fresh task: its retry
-- and crash budgets reset, its record kept for good again; false if its record is gone
local function revive(key, id, pending, now)
    if redis.call('TYPE', key)['ok'] ~= 'hash' then
        return false
    end
    local priority = stored_priority(key)
    redis.call('PERSIST', key)
    redis.call('HDEL', key, 'reason', 'finished_at')
    redis.call('HSET', key, 'state', 'pending', 'failures', 0, 'crashes', 0)
    redis.call('ZADD', pending, pending_score(priority, now), id)
    return true
end

-- a leased task whose worker or process died (its lease already removed): one crash more,
-- then back to pending (event `recovered`), or dead once it lost `max_crashes` workers (a
-- poison pill that kills whatever runs it). `how` tells the record what died. Returns
-- 'pending' or 'dead'.
local function after_crash(key, id, pending, dead, max_crashes, retention, now, how, prefix,
        stream)
    local crashes = counter_or_zero(key, 'crashes') + 1
    archive_attempt(key, now, 'crashed', cjson.encode({type = 'WorkerLostError',
        message = how}))
    redis.call('HSET', key, 'crashes', crashes)
    local held = redis.call('HMGET', key, 'name', 'worker')
    if crashes < tonumber(max_crashes) then
        to_pending(key, id, pending, now, prefix)
        event(stream, 'recovered', id, held[1], 'crashes', crashes, 'worker', held[2] or '')
        return 'pending'
    end
    local worker = held[2] or ''
    local err = cjson.encode({type = 'WorkerLostError',
        message = how .. ' ' .. crashes .. ' times; last worker ' .. worker})
    redis.call('HSET', key, 'state', 'dead', 'reason', 'worker lost', 'error', err,
        'finished_at', now)
    redis.call('PEXPIRE', key, retention)
    redis.call('ZADD', dead, now, id)
    event(stream, 'dead', id, held[1], 'reason', 'worker lost', 'crashes', crashes)
    return 'dead'
end

-- the pending tasks waiting for a slot of concurrency key `c`: move the first still there
-- back to pending (a claim then takes the slot, or sends it back to wait). Entries whose
-- record is gone, or no longer pending, are dropped; at most 10 are looked at.
local function wake_waiting(prefix, tasks, pending, signal, c, now)
    local waiting = prefix .. 'waiting:' .. c
    for _ = 1, 10 do
        local id = redis.call('LPOP', waiting)
        if not id then
            break
        end
        local key = tasks .. id
        if redis.call('HGET', key, 'state') == 'pending' then
            redis.call('ZADD', pending, reentry_score(key, prefix, now), id)
            wake(signal)
            break
        end
    end
    if redis.call('LLEN', waiting) == 0 then
        redis.call('SREM', prefix .. 'blocked', c)
    end
end

-- whether a task in `state` is live: not ended, so it holds its unique key
local function is_live(state)
    return state == 'pending' or state == 'scheduled' or state == 'retrying'
        or state == 'active' or state == 'cancelling'
end

-- a task's unique key is released when the task ends, if the task still holds it (a
-- throttle's is not: it lasts its window)
local function unlock_unique(prefix, id, flow)
    if flow.u and flow.um ~= 'throttle' then
        local lock = prefix .. 'unique:' .. flow.u
        if redis.call('GET', lock) == id then
            redis.call('DEL', lock)
        end
    end
end

-- give back what a task held as it leaves its lease: its concurrency slot (the first task
-- waiting for one goes back to pending) and, when it `ends` for good, its unique key.
-- Every script that takes a lease away or ends a task calls it.
local function release_flow(prefix, tasks, pending, signal, id, flow, ends, now)
    if flow.c then
        local slots = prefix .. 'slots:' .. flow.c
        if redis.call('SREM', slots, id) == 1 then
            if redis.call('SCARD', slots) == 0 then
                redis.call('SREM', prefix .. 'held', flow.c)
            end
            wake_waiting(prefix, tasks, pending, signal, flow.c, now)
        end
    end
    if ends then
        unlock_unique(prefix, id, flow)
    end
end

-- release_flow for the task of record `key`, if it uses flow control
local function release_held(key, prefix, tasks, pending, signal, id, ends, now)
    local flow = flow_of(redis.call('HGET', key, 'flow'))
    if flow then
        release_flow(prefix, tasks, pending, signal, id, flow, ends, now)
    end
end

-- a task that has not started leaves for good (cancelled, deleted): out of the waiting
-- list it may be in, and its unique key released
local function drop_flow(prefix, id, flow)
    if flow.c then
        local waiting = prefix .. 'waiting:' .. flow.c
        if redis.call('LREM', waiting, 0, id) > 0 and redis.call('LLEN', waiting) == 0 then
            redis.call('SREM', prefix .. 'blocked', flow.c)
        end
    end
    unlock_unique(prefix, id, flow)
end

-- a leased task that was asked to stop (state `cancelling`, its lease already removed)
-- ends cancelled: never retried, its attempt archived, its flow-control holds released.
-- Its worker ends it so once the handler stopped; recovery does when that worker is lost.
local function end_cancelled(key, id, now, retention, prefix, tasks, pending, signal, stream)
    archive_attempt(key, now, 'cancelled', nil)
    redis.call('HSET', key, 'state', 'cancelled', 'finished_at', now)
    redis.call('PEXPIRE', key, retention)
    release_held(key, prefix, tasks, pending, signal, id, true, now)
    event(stream, 'cancelled', id, redis.call('HGET', key, 'name'), 'was', 'active')
end
