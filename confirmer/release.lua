-- Give an account lease back, only if it is still ours.
-- KEYS[1]  lease key (cancelq:confirm:lease:<account>)
-- ARGV[1]  replica id releasing
-- Returns 1 when released, 0 when it was not ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
