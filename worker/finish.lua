-- Record a request's final outcome, settle its identity's claim, clear its outbox entry, delete
-- the broker's unacked record of the delivery that carried it (when that delivery ends with
-- it: its acknowledgement then has nothing left to delete) and, for an accepted cancel,
-- register its confirmation expectation, in one step.
-- KEYS[1]  outcome key of the request
-- KEYS[2]  outbox zset (request id -> ms it was last seen waiting)
-- KEYS[3]  outbox message hash (request id -> the message as pushed)
-- KEYS[4]  claim hash of the request's identity; a name no claim has (Keys.no_claim, or "")
--          when the outcome settles no claim
-- KEYS[5]  the worker process's unacked hash (kombu's record of the messages it holds); a name
--          no such hash has (Keys.no_record) when no delivery ends with this outcome
-- KEYS[6]  that process's unacked index zset (kombu's, delivery tag -> time); the same
--          placeholder without a delivery
-- KEYS[7]  (optional, with 8 and 9) confirmation key of the request
-- KEYS[8]  watch set of the (account, orderId) the confirmation follows
-- KEYS[9]  pending confirmations zset (request id -> deadline ms)
-- ARGV[1]  outcome JSON
-- ARGV[2]  outcome ttl in ms
-- ARGV[3]  request id
-- ARGV[4]  "1": keep the identity deduplicated for ARGV[5] ms; "0": release it so a later
--          request for the same cancel is sent again (used after failures)
-- ARGV[5]  dedup ttl in ms
-- ARGV[6]  delivery tag of the record in KEYS[5] and KEYS[6] ("": no delivery ends here)
-- ARGV[7]  (with KEYS[7..9]) confirmation deadline, epoch ms
-- ARGV[8]  (with KEYS[7..9]) watch set ttl in seconds
-- Returns 1 when this outcome was recorded, 0 when the request already had one (first wins).
-- The expectation is registered only with a new outcome and while no confirmation exists: a
-- repeated finish (a re-run after NOSCRIPT, a takeover's second attempt) never puts an already
-- confirmed request back into the pending set.
local written = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[3])
if ARGV[6] ~= '' then
  -- what the acknowledgement would delete (worker/host/kombu_channel.py skips it then)
  redis.call('HDEL', KEYS[5], ARGV[6])
  redis.call('ZREM', KEYS[6], ARGV[6])
end
if KEYS[4] ~= '' and redis.call('HGET', KEYS[4], 'owner') == ARGV[3] then
  if ARGV[4] == '1' then
    redis.call('HSET', KEYS[4], 'state', 'done')
    redis.call('PEXPIRE', KEYS[4], ARGV[5])
  else
    redis.call('DEL', KEYS[4])
  end
end
if not written then
  return 0
end
if #KEYS >= 9 and redis.call('EXISTS', KEYS[7]) == 0 then
  redis.call('SADD', KEYS[8], ARGV[3])
  redis.call('EXPIRE', KEYS[8], ARGV[8])
  redis.call('ZADD', KEYS[9], ARGV[7], ARGV[3])
end
return 1
