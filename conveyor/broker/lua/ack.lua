-- ack.lua: record the success of tasks of one queue and release their leases.
--
-- KEYS[1] active       ZSET id -> lease deadline (ms)
-- KEYS[2] task prefix  (task hashes are KEYS[2] .. id)
-- KEYS[3] pending      ZSET where a task waiting for a released concurrency slot goes
-- KEYS[4] signal       LIST wake-up token for idle workers
-- KEYS[5] flow prefix  (flow-control keys, see prelude.lua)
-- KEYS[6] events       STREAM the queue's state changes (see prelude.lua)
--
-- ARGV[1] retention of the records (ms)
-- ARGV[2..] per task: id, fencing token of the claim, result (JSON)
--
-- Returns: per task 1, or 0 when its token is stale (the lease was lost; nothing is
-- written for it). A repeat of an ack that already succeeded (a client retry after a
-- lost reply) is 1. A worker acks every task that finished since its last ack in one call.
local now = now_ms()
local out = {}
local released = {}  -- the ids whose lease this call releases
local flows = {}  -- ARGV index -> the flow field of a task that has one
local names = {}  -- ARGV index -> the task's name, for its event
-- Decide first, then write, beginning with the ZREM of the leases: at maxmemory
-- (noeviction) Redis refuses a script's first write only when it may grow memory, which a
-- ZREM cannot, and then lets the script finish. So acks go on while Redis is full, and
-- the records they let expire are how its memory comes back.
for i = 2, #ARGV, 3 do
    local id, token = ARGV[i], ARGV[i + 1]
    local held = redis.call('HMGET', KEYS[2] .. id, 'token', 'state', 'flow', 'name')
    -- the token and the state fence it: every script that takes a lease away changes the
    -- state, and every claim the token
    if held[1] == token and held[2] == 'active' then
        released[#released + 1] = id
        out[#out + 1] = i
        flows[i] = held[3]
        names[i] = held[4]
    else
        out[#out + 1] = (held[1] == token and held[2] == 'succeeded') and 1 or 0
    end
end
-- in slices: unpack takes at most a few thousand values, and a batch has no bound
for first = 1, #released, 1000 do
    redis.call('ZREM', KEYS[1], unpack(released, first, math.min(first + 999, #released)))
end
local events = event_batch(KEYS[6])
for n, i in ipairs(out) do
    if i > 1 then  -- the ARGV index of a task this call acks
        local key = KEYS[2] .. ARGV[i]
        redis.call('HSET', key, 'state', 'succeeded', 'finished_at', now, 'result', ARGV[i + 2])
        redis.call('PEXPIRE', key, ARGV[1])
        events.add('succeeded', ARGV[i], names[i])
        local flow = flow_of(flows[i])
        if flow then
            release_flow(KEYS[5], KEYS[2], KEYS[3], KEYS[4], ARGV[i], flow, true, now)
        end
        out[n] = 1
    end
end
events.close()
return out
