-- workflow_step.lua: advance one workflow: begin it, or record how one of its task nodes
-- ended, and say which task nodes to start now.
--
-- KEYS[1] meta     HASH state (running, succeeded, failed), policy (stop, continue), root,
--                       created_at, finished_at, result, error, failures, begun
-- KEYS[2] nodes    HASH node id -> JSON {k: task|chain|group|chord, p: parent, i: index in
--                       the parent (from 1), c: children}; a chord is a chain of its group
--                       and its callback
-- KEYS[3] specs    HASH task node id -> the message it enqueues (JSON, returned as it is)
-- KEYS[4] states   HASH node id -> started, succeeded or failed
-- KEYS[5] results  HASH node id -> its result or error description (JSON); first one wins
-- KEYS[6] counts   HASH group id -> children ended; 'by:' .. group id -> the child that
--                       ended it (so a repeat of another child's step never ends it again)
-- KEYS[7] tasks    HASH task node id -> task id
--
-- ARGV[1] node id (for begin: the root)
-- ARGV[2] outcome: begin, succeeded or failed
-- ARGV[3] the node's result, or its error description (JSON); "" for begin
-- ARGV[4] the id of the task that ran the node; "" for begin
-- ARGV[5] retention of the keys once the workflow succeeded (ms)
-- ARGV[6] retention of the keys once the workflow failed (ms)
--
-- Returns: {workflow state ("" when unknown or expired), fresh (1: this call recorded the
-- node's end, or began the workflow; 0: a repeat, which writes nothing), then per task
-- node to start now: node id, its spec, 1 and its input (JSON) or 0 and ""}.
--
-- Everything returned is derived from stored state, so a repeat (a worker that died after
-- this call and before its ack runs the task again) returns the same nodes with the same
-- inputs; the worker enqueues them under idempotency keys `workflow:<id>:<node>`, so no
-- node starts twice. A group ends exactly once: its counter moves only on a child's first
-- record, and only the child that brought it to the end (`by:`) carries on from it.
-- Loops are bounded by the workflow's size, which the producer bounds (MAX_NODES).
local meta = redis.call('HMGET', KEYS[1], 'state', 'policy')
if not meta[1] then
    return {'', 0}
end
local running = meta[1] == 'running'
local out = {'', 0}

local function node(id)
    return cjson.decode(redis.call('HGET', KEYS[2], id))
end

-- the workflow ends: its outcome is written, its keys expire after `retention`
local function end_workflow(state, field, value, retention)
    redis.call('HSET', KEYS[1], 'state', state, field, value, 'finished_at', now_ms())
    for k = 1, 7 do
        redis.call('PEXPIRE', KEYS[k], retention)
    end
    running = false
end

-- node `id` starts with `input` (JSON, or false): its first task nodes go in the reply
local function start(id, input)
    local n = node(id)
    redis.call('HSETNX', KEYS[4], id, 'started')
    if n.k == 'task' then
        out[#out + 1] = id
        out[#out + 1] = redis.call('HGET', KEYS[3], id)
        out[#out + 1] = input and 1 or 0
        out[#out + 1] = input or ''
    elseif n.k == 'group' then  -- every member gets the same input
        for _, child in ipairs(n.c) do
            start(child, input)
        end
    else  -- chain or chord: its first part gets the input
        start(n.c[1], input)
    end
end

-- the results of a group's children in order, as one JSON array
local function gathered(n)
    local parts = {}
    for _, child in ipairs(n.c) do
        parts[#parts + 1] = redis.call('HGET', KEYS[5], child)
    end
    return '[' .. table.concat(parts, ',') .. ']'
end

local complete

-- what the end of node `id` (its result stored) sets going; `fresh` on its first record
local function finish(id, n, fresh)
    if not running then  -- a stopped workflow starts nothing more
        return
    end
    local result = redis.call('HGET', KEYS[5], id)
    if not n.p then
        end_workflow('succeeded', 'result', result, ARGV[5])
        return
    end
    local parent = node(n.p)
    if parent.k == 'group' then
        if fresh and redis.call('HINCRBY', KEYS[6], n.p, 1) == #parent.c then
            redis.call('HSET', KEYS[6], 'by:' .. n.p, id)
        end
        if redis.call('HGET', KEYS[6], 'by:' .. n.p) == id then
            complete(n.p, parent, gathered(parent), 'succeeded')
        end
    elseif n.i < #parent.c then
        start(parent.c[n.i + 1], result)
    else
        complete(n.p, parent, result, 'succeeded')
    end
end

-- node `id` ended with `result` in `state`: recorded unless it was already (first wins),
-- then carried on from; true when this call recorded it
complete = function(id, n, result, state)
    local fresh = redis.call('HSETNX', KEYS[5], id, result) == 1
    if fresh then
        redis.call('HSET', KEYS[4], id, state)
    end
    finish(id, n, fresh)
    return fresh
end

local id, outcome = ARGV[1], ARGV[2]
local fresh = false
if outcome == 'begin' then
    fresh = redis.call('HSETNX', KEYS[1], 'begun', 1) == 1
    if running then
        start(id, false)
    end
else
    redis.call('HSETNX', KEYS[7], id, ARGV[4])
    local n = node(id)
    if outcome == 'succeeded' then
        fresh = complete(id, n, ARGV[3], 'succeeded')
    elseif meta[2] == 'continue' then  -- the error description stands in for the result
        fresh = complete(id, n, ARGV[3], 'failed')
        if fresh then
            redis.call('HINCRBY', KEYS[1], 'failures', 1)
        end
    else
        fresh = redis.call('HSETNX', KEYS[5], id, ARGV[3]) == 1
        if fresh then
            redis.call('HSET', KEYS[4], id, 'failed')
            redis.call('HINCRBY', KEYS[1], 'failures', 1)
            if running then
                end_workflow('failed', 'error', ARGV[3], ARGV[6])
            end
        end
    end
end
out[1] = redis.call('HGET', KEYS[1], 'state')
out[2] = fresh and 1 or 0
return out
