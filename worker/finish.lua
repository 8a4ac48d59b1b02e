-- Record a request's final outcome, settle its identity's claim and clear its outbox entry,
-- in one step.
-- KEYS[1]  outcome key of the request
-- KEYS[2]  outbox zset (request id -> ms it was last seen waiting)
-- KEYS[3]  outbox message hash (request id -> the message as pushed)
-- KEYS[4]  (optional) claim hash of the request's identity
-- ARGV[1]  outcome JSON
-- ARGV[2]  outcome ttl in ms
-- ARGV[3]  request id
-- ARGV[4]  "1": keep the identity deduplicated for ARGV[5] ms; "0": release it so a later
--          request for the same cancel is sent again (used after failures)
-- ARGV[5]  dedup ttl in ms
-- Returns 1 when this outcome was recorded, 0 when the request already had one (first wins).
local written = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[3])
if #KEYS > 3 and redis.call('HGET', KEYS[4], 'owner') == ARGV[3] then
  if ARGV[4] == '1' then
    redis.call('HSET', KEYS[4], 'state', 'done')
    redis.call('PEXPIRE', KEYS[4], ARGV[5])
  else
    redis.call('DEL', KEYS[4])
  end
end
if written then
  return 1
end
return 0
