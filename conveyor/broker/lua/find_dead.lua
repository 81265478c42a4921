-- find_dead.lua: one page of a scan of a dead-letter queue for letters matching a filter,
-- newest first, so the filter runs where the records are (no traceback crosses the wire).
--
-- KEYS[1] dead         ZSET id -> time of death (ms)
-- KEYS[2] task prefix  (task hashes are KEYS[2] .. id)
--
-- ARGV[1] died at or after (ms, or "-inf")
-- ARGV[2] died at or before (ms, or "+inf")
-- ARGV[3] task name ("" for any)
-- ARGV[4] text the error's type, message or traceback must contain, lowercase ("" for
--         any); letters compare without case for ASCII only (Lua's string.lower)
-- ARGV[5] rank to start at (0: the newest letter in the time range)
-- ARGV[6] most letters to look at in this call
--
-- Returns: {next rank or -1 when the range is exhausted, then per match: id, time of death}.
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[2], ARGV[1], 'WITHSCORES',
    'LIMIT', tonumber(ARGV[5]), tonumber(ARGV[6]))
local out = {-1}
if #ids / 2 >= tonumber(ARGV[6]) then
    out[1] = tonumber(ARGV[5]) + #ids / 2
end
-- the error's own words: its JSON's keys and escapes are not what the operator searches
local function says(error_json, text)
    local ok, error = pcall(cjson.decode, error_json)
    if not ok or type(error) ~= 'table' then
        return false
    end
    for _, field in ipairs({'type', 'message', 'traceback'}) do
        local value = error[field]
        if type(value) == 'string' and string.find(string.lower(value), text, 1, true) then
            return true
        end
    end
    return false
end
for i = 1, #ids, 2 do
    local held = redis.call('HMGET', KEYS[2] .. ids[i], 'name', 'error')
    local named = ARGV[3] == '' or held[1] == ARGV[3]
    local said = ARGV[4] == '' or (held[2] and says(held[2], ARGV[4]))
    if named and said then
        out[#out + 1] = ids[i]
        out[#out + 1] = ids[i + 1]
    end
end
return out
