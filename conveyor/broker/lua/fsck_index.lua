-- fsck_index.lua: check (and optionally repair) entries of one index of a queue.
--
-- KEYS[1] index        ZSET  one of pending, active, scheduled, dead; or the LIST ready
-- KEYS[2] task prefix  (task hashes are KEYS[2] .. id)
--
-- ARGV[1] "1" to repair, "0" to report only
-- ARGV[2] the states a record listed in this index may have, comma-separated
-- ARGV[3] for the list: how far from its head the ids were read (entries only move toward
--         the head, so one still listed is within that many); 0 for a ZSET
-- ARGV[4..] ids found in the index, whole (a ready entry is only the ULID of one); the
--          caller bounds their number
--
-- Returns: flat {id, problem, action, ...}. Problems:
--   "record gone"   the entry's record expired or was deleted  -> entry dropped
--   "wrong index"   the record's state does not belong here    -> entry dropped (the
--                   record check then re-indexes the record where its state says)
local repair = ARGV[1] == '1'
local allowed = {}
for state in string.gmatch(ARGV[2], '[^,]+') do
    allowed[state] = true
end
local out = {}
local is_list = redis.call('TYPE', KEYS[1])['ok'] == 'list'
local function still_listed(id)
    if is_list then
        return redis.call('LPOS', KEYS[1], ready_entry(id), 'MAXLEN', tonumber(ARGV[3]))
    end
    return redis.call('ZSCORE', KEYS[1], id)
end
for i = 4, #ARGV do
    local id = ARGV[i]
    if still_listed(id) then
        local key = KEYS[2] .. id
        local problem = false
        local kind = redis.call('TYPE', key)['ok']
        if kind == 'none' then
            problem = 'record gone'
        elseif kind == 'hash' then
            local state = redis.call('HGET', key, 'state')
            if state and not allowed[state] then
                problem = 'wrong index'
            end
        end
        if problem then
            out[#out + 1] = id
            out[#out + 1] = problem
            out[#out + 1] = repair and 'entry dropped' or ''
            if repair then
                if is_list then
                    redis.call('LREM', KEYS[1], 0, ready_entry(id))
                else
                    redis.call('ZREM', KEYS[1], id)
                end
            end
        end
    end
end
return out
