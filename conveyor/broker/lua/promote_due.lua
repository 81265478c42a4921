-- promote_due.lua: move scheduled tasks and waiting retries whose time has come to pending.
-- Every worker runs it; ZREM decides which call promotes an entry, so each is promoted once.
--
-- KEYS[1] scheduled    ZSET id -> due time (ms)
-- KEYS[2] pending      ZSET id -> priority band + time
-- KEYS[3] signal       LIST wake-up token for idle workers
-- KEYS[4] task prefix  (task hashes are KEYS[4] .. id)
-- KEYS[5] retrying     ZSET id -> due time (ms): the retries among `scheduled`
-- KEYS[6] flow prefix  (a task of a fair group comes back at the queue's virtual time)
-- KEYS[7] events       STREAM the queue's state changes (see prelude.lua)
--
-- ARGV[1] most tasks to promote in this call
--
-- Returns: {promoted count, ms until the next due task or -1 if none}.
-- A retry leaves the `retrying` count once due, by score: its entry shares the due time
-- of its `scheduled` one, so an entry that outlived its task (deleted) cannot stay either.
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #due > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
end
local promoted = 0
for _, id in ipairs(due) do
    redis.call('ZREM', KEYS[1], id)
    local key = KEYS[4] .. id
    if redis.call('TYPE', key)['ok'] == 'hash' then
        redis.call('HSET', key, 'state', 'pending')
        redis.call('ZADD', KEYS[2], reentry_score(key, KEYS[6], now), id)
        event(KEYS[7], 'due', id, redis.call('HGET', key, 'name'))
        promoted = promoted + 1
    end
end
if promoted > 0 then
    wake(KEYS[3])
end
local next_due = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if next_due[2] then
    return {promoted, math.max(0, tonumber(next_due[2]) - now)}
end
return {promoted, -1}
