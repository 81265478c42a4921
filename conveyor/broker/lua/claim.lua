-- claim.lua: lease up to N pending tasks of one queue to a worker (Reliable Queue Pattern).
--
-- KEYS[1] pending      ZSET  id -> priority band + time: every pending task but those
--                            enqueued at the default priority (see prelude.lua)
-- KEYS[2] active       ZSET  id -> lease deadline (ms)
-- KEYS[3] paused       STRING present while the queue is paused
-- KEYS[4] dead         ZSET  id -> time of death (ms), for records found corrupt
-- KEYS[5] signal       LIST  wake-up token; re-pushed while work remains, so the next
--                            idle worker wakes too (a chain, not a thundering herd)
-- KEYS[6] task prefix  (task hashes are KEYS[6] .. id)
-- KEYS[7] request      LIST  ids this claim request leased, kept for one lease: a client
--                            retry of the same request (its reply was lost) gets the same
--                            tasks back instead of orphaning them and claiming more
-- KEYS[8] ready        LIST  ULIDs of pending tasks of the default priority, oldest first
-- KEYS[9] flow prefix  (flow-control keys, see prelude.lua)
-- KEYS[10] scheduled   ZSET  id -> due time (ms): where a task over its rate limit waits
-- KEYS[11] events      STREAM the queue's state changes (see prelude.lua)
--
-- ARGV[1] most tasks to claim (at most 1000: the index writes unpack one argument per task)
-- ARGV[2] lease (ms)
-- ARGV[3] worker id
-- ARGV[4] "1" if the worker is idle and may take a suspect: a task that lost its worker
--         before (crashes > 0), which is then claimed alone; "0" skips suspects
-- ARGV[5] retention of a record found corrupt and dead-lettered (ms)
-- ARGV[6] the queue's name: a ready entry is the ULID of the id `<queue>:<ULID>`
--
-- Returns: {now, suspects skipped (0|1), the earliest start reserved for a task over its
--          rate limit (ms, 0 if none: the caller's scheduler should promote it then), then
--          per task: id, token, attempts, name, args, kwargs, failures, crashes,
--          max_retries, timeout, enqueued_at, due_at}.
-- Each claim increments the task's fencing token; completions must present it.
-- Claim order: the ZSET's entries of a higher priority; then the default priority's, its
-- ZSET entries (tasks back in pending, grouped tasks) taking turns with the ready list;
-- then the ZSET's lower priorities.
-- An index entry whose record is gone, or met twice in one claim, is dropped.
-- Suspects run alone so a poison pill that kills its process takes no innocent task
-- with it; a busy worker that skipped one drains, then claims it idle.
-- Flow control, for a task with a `flow` field: without a free slot of its concurrency key
-- it leaves pending for that key's waiting list (a released slot brings it back); over its
-- rate limit, it reserves the next start its limit allows and waits in `scheduled` until
-- then, so no worker polls for it. A claim never spins on a task it may not run.
local now = now_ms()
local out = {now, 0, 0}
-- what a claim reads of a record, in one HMGET: the fields the worker gets, then the counters
local fields = {'name', 'args', 'kwargs', 'failures', 'crashes', 'max_retries', 'timeout',
    'enqueued_at', 'due_at', 'checkpoint', 'workflow', 'trace', 'token', 'attempts', 'flow',
    'rate_at'}
local SENT, CRASHES, TOKEN, ATTEMPTS, FLOW, RATE_AT = 12, 5, 13, 14, 15, 16

local function emit(id, values, token, attempts)
    out[#out + 1] = id
    out[#out + 1] = token
    out[#out + 1] = attempts
    for f = 1, SENT do
        out[#out + 1] = values[f]
    end
end

if redis.call('EXISTS', KEYS[7]) == 1 then
    for _, id in ipairs(redis.call('LRANGE', KEYS[7], 0, -1)) do
        local key = KEYS[6] .. id
        if redis.call('ZSCORE', KEYS[2], id) and redis.call('HGET', key, 'worker') == ARGV[3] then
            local values = redis.call('HMGET', key, unpack(fields))
            emit(id, values, tonumber(values[TOKEN]), tonumber(values[ATTEMPTS]))
        end
    end
    return out
end
if redis.call('EXISTS', KEYS[3]) == 1 then
    return out
end
local want = tonumber(ARGV[1])
local deadline = now + tonumber(ARGV[2])
local may_take_suspect = ARGV[4] == '1'
-- Decide first, then write, beginning with the ZREM from pending and the LTRIM of ready. At
-- maxmemory (noeviction) Redis refuses a script's first write only when it may grow memory,
-- which neither can, and then lets the script finish: so workers go on claiming while Redis
-- is full, and draining the queue is how its memory comes back (a claim adds a few fields).
local unlisted, claims, corrupt, not_hash = {}, {}, {}, {}
local seen = {}  -- ids met in this claim: a duplicate entry is dropped, not claimed twice
local alone = false  -- a suspect was taken: it runs alone, the claim ends there
local waits, defers = {}, {}  -- {id, concurrency key}; {id, reserved start}
local slots_taken = {}  -- concurrency key -> ids this claim gives a slot of it
local buckets = {}  -- rate key -> its bucket's arrival time after this claim
local fair_tag = nil  -- the highest virtual start among the grouped tasks claimed

-- Whether a task with flow control may run now: 'run', 'wait' (no free slot of its
-- concurrency key) or 'later' with the start its rate limit reserves for it (GCRA: a
-- bucket holds when its next task conforms; a task holding a reserved start has paid).
local function admit(id, values, flow)
    local c = flow.c
    if c then
        local taken = slots_taken[c] and #slots_taken[c] or 0
        if redis.call('SCARD', KEYS[9] .. 'slots:' .. c) + taken >= (tonumber(flow.cl) or 1) then
            return 'wait'
        end
    end
    if flow.r then
        local interval = (tonumber(flow.rp) or 1000) / math.max(tonumber(flow.rn) or 1, 1)
        local reserved = tonumber(values[RATE_AT])
        -- a reserved start is honoured up to one interval (at least RATE_SLIP ms) late;
        -- later than that its slot has gone by, and the task takes a new one
        if not (reserved and now <= reserved + math.max(interval, RATE_SLIP)) then
            local r = flow.r
            local tat = buckets[r] or tonumber(redis.call('GET', KEYS[9] .. 'rate:' .. r)) or now
            local conforms = tat - interval * ((tonumber(flow.rb) or 1) - 1)
            buckets[r] = math.max(tat, now) + interval
            if conforms >= now + 1 then  -- Redis' clock counts whole ms
                return 'later', math.ceil(conforms)
            end
        end
    end
    if c then
        slots_taken[c] = slots_taken[c] or {}
        table.insert(slots_taken[c], id)
    end
    return 'run'
end

-- One candidate. Returns false when it must stay where it is (a suspect this claim may not
-- take); true when it is dealt with: claimed, or its entry dropped.
local function consider(id, score)
    local key = KEYS[6] .. id
    local values = redis.pcall('HMGET', key, unpack(fields))
    if values['err'] or (not values[1] and redis.call('EXISTS', key) == 0) then
        -- gone (expired or deleted): the entry is dropped; not a hash: corrupt, kept in
        -- the dead set for inspection
        if values['err'] then
            not_hash[#not_hash + 1] = id
        end
        return true
    end
    if seen[id] then
        return true
    end
    local suspect = (tonumber(values[CRASHES]) or 0) > 0
    if suspect and not (may_take_suspect and #claims == 0) then
        out[2] = 1
        return false
    end
    seen[id] = true
    -- validate the counters before any write, so a corrupt record cannot abort the script
    -- half way (Redis does not roll back a failed script)
    local token, attempts = counter(values[TOKEN]), counter(values[ATTEMPTS])
    if not (token and attempts) then
        corrupt[#corrupt + 1] = id
        return true
    end
    local flow = flow_of(values[FLOW])
    if flow then
        local verdict, start = admit(id, values, flow)
        if verdict == 'wait' then
            waits[#waits + 1] = {id, flow.c}
            return true
        elseif verdict == 'later' then
            defers[#defers + 1] = {id, start}
            return true
        end
        if flow.g and score then
            local tag = math.fmod(score, PRIORITY_BAND)
            fair_tag = math.max(fair_tag or tag, tag)
        end
    end
    claims[#claims + 1] = {id, values, token + 1, attempts + 1, values[RATE_AT]}
    alone = suspect
    return true
end

-- one ZSET entry: a suspect left in place is skipped over
local function from_zset(id, score)
    if consider(id, score) then
        unlisted[#unlisted + 1] = id
    end
end

-- from the ZSET, between two scores
local function from_banded(min, max, limit)
    local found = redis.call('ZRANGEBYSCORE', KEYS[1], min, max, 'WITHSCORES', 'LIMIT', 0, limit)
    for n = 1, #found, 2 do
        from_zset(found[n], tonumber(found[n + 1]))
        if alone then
            return
        end
    end
end

-- The ZSET's entries down to the default priority, in one read: those of a higher priority
-- first. The default priority's there (tasks back in pending, grouped tasks) then take
-- turns with the ready list's, so neither waits behind the other's backlog; which goes
-- first follows the parity of the ms, so claims of one task alternate too.
local top = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('(%.0f', DEFAULT_BAND_END),
    'WITHSCORES', 'LIMIT', 0, want)
local band = {}  -- flat id, score: the default priority's entries
for n = 1, #top, 2 do
    local score = tonumber(top[n + 1])
    if score >= DEFAULT_BAND_START then
        band[#band + 1] = top[n]
        band[#band + 1] = score
    elseif not alone then
        from_zset(top[n], score)
    end
end
local from_ready = 0  -- the prefix of the list this claim takes
if not alone and #claims < want then
    local head = ARGV[6] .. ':'
    local entries = redis.call('LRANGE', KEYS[8], 0, want - #claims - 1)
    local b, open = 1, true  -- open: the list may still give (a suspect there ends it)
    local band_turn = now % 2 == 0
    if not band_turn and may_take_suspect and #band > 0 and #claims == 0 then
        -- an idle worker takes a suspect heading the band alone, before any list task
        band_turn = (tonumber(redis.call('HGET', KEYS[6] .. band[1], 'crashes')) or 0) > 0
    end
    while not alone and #claims < want and (b < #band or (open and from_ready < #entries)) do
        if b < #band and (band_turn or not open or from_ready >= #entries) then
            from_zset(band[b], band[b + 1])
            b = b + 2
        elseif consider(head .. entries[from_ready + 1]) then
            from_ready = from_ready + 1
        else
            open = false  -- a suspect stays in the list (only new tasks go there: be safe)
        end
        band_turn = not band_turn
    end
end
if not alone and #claims < want then
    from_banded(string.format('%.0f', DEFAULT_BAND_END), '+inf', want - #claims)
end
-- the writes of flow control, after the index writes that free memory
local function write_flow()
    for c, ids in pairs(slots_taken) do
        redis.call('SADD', KEYS[9] .. 'slots:' .. c, unpack(ids))
        redis.call('SADD', KEYS[9] .. 'held', c)
    end
    for _, wait in ipairs(waits) do
        redis.call('RPUSH', KEYS[9] .. 'waiting:' .. wait[2], wait[1])
        redis.call('SADD', KEYS[9] .. 'blocked', wait[2])
    end
    for r, tat in pairs(buckets) do
        redis.call('SET', KEYS[9] .. 'rate:' .. r, string.format('%.3f', tat), 'PX',
            math.ceil(math.max(1, tat - now)) + RATE_SLIP)
        redis.call('SADD', KEYS[9] .. 'rates', r)
    end
    for _, defer in ipairs(defers) do
        local id, start = defer[1], defer[2]
        redis.call('HSET', KEYS[6] .. id, 'state', 'scheduled', 'due_at', start, 'rate_at', start)
        redis.call('ZADD', KEYS[10], start, id)
        event(KEYS[11], 'scheduled', id, redis.call('HGET', KEYS[6] .. id, 'name'), 'due_at',
            start, 'reason', 'rate limit')
        if out[3] == 0 or start < out[3] then
            out[3] = start
        end
    end
    if fair_tag then
        local vtime = KEYS[9] .. 'vtime'
        if fair_tag >= (tonumber(redis.call('GET', vtime)) or 0) then
            redis.call('SET', vtime, string.format('%.0f', fair_tag))
            -- a group whose last task started needs no entry: its next one would start
            -- at the virtual time anyway (give or take the one step it finishes after)
            redis.call('ZREMRANGEBYSCORE', KEYS[9] .. 'groups', '-inf', fair_tag + 1)
        end
    end
end

if #unlisted > 0 then
    redis.call('ZREM', KEYS[1], unpack(unlisted))
end
if from_ready > 0 then
    redis.call('LTRIM', KEYS[8], from_ready, -1)
end
for _, id in ipairs(not_hash) do
    redis.call('ZADD', KEYS[4], now, id)
    event(KEYS[11], 'dead', id, nil, 'reason', 'not a task record')
end
for _, id in ipairs(corrupt) do
    -- a counter that is not a number: the record is corrupt, keep it for inspection
    local key = KEYS[6] .. id
    redis.call('HSET', key, 'state', 'dead', 'reason', 'corrupt record', 'finished_at', now)
    redis.call('PEXPIRE', key, ARGV[5])
    redis.call('ZADD', KEYS[4], now, id)
    event(KEYS[11], 'dead', id, redis.call('HGET', key, 'name'), 'reason', 'corrupt record')
end
write_flow()
-- index writes are gathered and made once at the end: one ZADD, one RPUSH
local leases, taken = {}, {}
local events = event_batch(KEYS[11])
for _, claim in ipairs(claims) do
    local id, values, token, attempts = claim[1], claim[2], claim[3], claim[4]
    redis.call('HSET', KEYS[6] .. id, 'token', token, 'attempts', attempts, 'state', 'active',
        'started_at', now, 'worker', ARGV[3])
    if claim[5] then  -- its reserved start is used
        redis.call('HDEL', KEYS[6] .. id, 'rate_at')
    end
    leases[#leases + 1] = deadline
    leases[#leases + 1] = id
    taken[#taken + 1] = id
    emit(id, values, token, attempts)
    events.add('started', id, values[1], 'attempt', attempts, 'worker', ARGV[3])
end
if #taken > 0 then
    events.close()
    redis.call('ZADD', KEYS[2], unpack(leases))
    redis.call('RPUSH', KEYS[7], unpack(taken))
    redis.call('PEXPIRE', KEYS[7], ARGV[2])
    if pending_count(KEYS[1], KEYS[8]) > 0 then
        wake(KEYS[5])
    end
end
return out
