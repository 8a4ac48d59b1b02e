-- Rescue enqueued cancels that the broker lost: an outbox entry older than the threshold with
-- no outcome, not waiting in the queue, not held unacked by a worker and not parked in a lane
-- is pushed again (at the consumer end). kombu's Redis transport pops a message before it
-- records it as unacked, so a Redis restart at that instant loses it; this closes that gap.
-- A rescued message may turn out to be a repeat: dedup answers it.
-- KEYS[1]  outbox zset (request id -> ms it was last seen waiting)
-- KEYS[2]  outbox message hash (request id -> the message as pushed)
-- KEYS[3]  the Celery queue list
-- KEYS[4]  kombu's shared unacked hash (delivery tag -> message; older workers)
-- ARGV[1]  threshold in ms: entries older than this are checked
-- ARGV[2]  most entries to check in this call
-- ARGV[3]  prefix of outcome keys (<prefix>:outcome:<id>), parked items (<prefix>:item:<id>),
--          the pods zset (<prefix>:pods) and each pod's unacked hash (<prefix>:unacked:<pod>)
-- Returns {rescued, still waiting (seen again), cleared (already had an outcome)}
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]),
                       'LIMIT', 0, tonumber(ARGV[2]))
local rescued, waiting, cleared = 0, 0, 0
local held_by = {KEYS[4]}
for _, pod in ipairs(redis.call('ZRANGE', ARGV[3] .. ':pods', 0, -1)) do
  held_by[#held_by + 1] = ARGV[3] .. ':unacked:' .. pod
end
local function unacked(tag)
  for _, hash in ipairs(held_by) do
    if redis.call('HEXISTS', hash, tag) == 1 then
      return true
    end
  end
  return false
end
for _, id in ipairs(old) do
  local message = redis.call('HGET', KEYS[2], id)
  if not message or redis.call('EXISTS', ARGV[3] .. ':outcome:' .. id) == 1 then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    cleared = cleared + 1
  else
    local ok, decoded = pcall(cjson.decode, message)
    local tag = ok and decoded.properties and decoded.properties.delivery_tag or nil
    local held = (tag and unacked(tag))
      or redis.call('EXISTS', ARGV[3] .. ':item:' .. id) == 1
      or redis.call('LPOS', KEYS[3], message)
    if held then
      waiting = waiting + 1
    else
      redis.call('RPUSH', KEYS[3], message)
      rescued = rescued + 1
    end
    redis.call('ZADD', KEYS[1], now, id)
  end
end
return {rescued, waiting, cleared}
