-- find_dead.lua: one page of a scan of a dead-letter queue for letters matching a filter,
-- newest first, so the filter runs where the records are (no traceback crosses the wire).
--
-- KEYS[1] dead         ZSET id -> time of death (ms)
-- KEYS[2] task prefix  (task hashes are KEYS[2] .. id)
--
-- ARGV[1] died at or after (ms, or "-inf")
-- ARGV[2] died at or before (ms, or "+inf")
-- ARGV[3] task name ("" for any)
-- ARGV[4] text the error's type or message must contain, lowercase ("" for any); letters
--         compare without case for ASCII only (Lua's string.lower)
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
-- a text JSON writes as it is (no quote, backslash or control character to escape)
local plain = not string.find(ARGV[4], '["\\%c]')
-- the error's own words, its type and message: not its traceback (lowering that costs
-- more than all the rest), nor its JSON's keys and escapes
local function says(error_json, text)
    -- most letters do not match: the start of the raw JSON, before the traceback the
    -- worker writes last, rules them out without decoding it
    local cut = string.find(error_json, '"traceback":', 1, true)
    local head = cut and string.sub(error_json, 1, cut - 1) or error_json
    if plain and not string.find(string.lower(head), text, 1, true) then
        return false
    end
    local ok, error = pcall(cjson.decode, error_json)
    if not ok or type(error) ~= 'table' then
        return false
    end
    for _, field in ipairs({'type', 'message'}) do
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
