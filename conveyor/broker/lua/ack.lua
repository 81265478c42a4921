-- ack.lua: record the success of tasks of one queue and release their leases.
--
-- KEYS[1] active       ZSET id -> lease deadline (ms)
-- KEYS[2] task prefix  (task hashes are KEYS[2] .. id)
--
-- ARGV[1] retention of the records (ms)
-- ARGV[2..] per task: id, fencing token of the claim, result (JSON)
--
-- Returns: per task 1, or 0 when its token is stale (the lease was lost; nothing is
-- written for it). A repeat of an ack that already succeeded (a client retry after a
-- lost reply) is 1. A worker acks every task that finished since its last ack in one call.
local now = now_ms()
local out = {}
local released = {}  -- the leases to remove, in one ZREM at the end
for i = 2, #ARGV, 3 do
    local id, token = ARGV[i], ARGV[i + 1]
    local key = KEYS[2] .. id
    local held = redis.call('HMGET', key, 'token', 'state')
    -- the token and the state fence it: every script that takes a lease away changes the
    -- state, and every claim the token
    if held[1] == token and held[2] == 'active' then
        redis.call('HSET', key, 'state', 'succeeded', 'finished_at', now, 'result', ARGV[i + 2])
        redis.call('PEXPIRE', key, ARGV[1])
        released[#released + 1] = id
        out[#out + 1] = 1
    else
        out[#out + 1] = (held[1] == token and held[2] == 'succeeded') and 1 or 0
    end
end
-- in slices: unpack takes at most a few thousand values, and a batch has no bound
for first = 1, #released, 1000 do
    redis.call('ZREM', KEYS[1], unpack(released, first, math.min(first + 999, #released)))
end
return out
