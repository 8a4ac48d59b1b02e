-- Take or renew an account lease: one owner per account at a time.
-- KEYS[1]  lease key (cancelq:confirm:lease:<account>)
-- ARGV[1]  replica id asking
-- ARGV[2]  lease time to live (ms)
-- Returns 1 when renewed (already ours), 2 when newly taken (was free or expired), 0 when
-- another replica holds it.
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not owner then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
