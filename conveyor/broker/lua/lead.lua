-- lead.lua: one worker at a time surveys the workers for the dead (the reaper); it takes
-- the role when the role is free, keeps it while it renews it, and gives it up on stopping.
--
-- KEYS[1] role  STRING the id of the worker that has the role, expiring unless renewed
--
-- ARGV[1] worker id
-- ARGV[2] how long the role lasts unless renewed (ms); 0 gives it up
--
-- Returns: 1 if the role is (or was, when giving it up) this worker's, else 0.
-- Renewal is a PEXPIRE, which Redis allows at maxmemory (a SET it would refuse), so the
-- reaper keeps its role while Redis is full; taking a free role is refused then.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
    return 0
end
if ARGV[2] == '0' then
    redis.call('DEL', KEYS[1])
elseif holder then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
