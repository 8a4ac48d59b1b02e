-- Hand back one message that a dead worker process held: remove it from that process's unacked
-- records and push it at the consumer end of its queue (taken next), in one step, only while
-- the process is still dead and only once (of two sweepers racing, the second finds nothing).
-- KEYS[1]  pods zset (pod id -> Redis-clock ms of its last beat): the dead process's beat must
--          be older than the pod TTL (or absent: kombu's shared hash, a forgotten pod)
-- KEYS[2]  its unacked hash (delivery tag -> [message, exchange, routing key])
-- KEYS[3]  its unacked index zset (delivery tag -> time taken)
-- KEYS[4]  the queue list the message goes back to
-- ARGV[1]  delivery tag
-- ARGV[2]  the message to push (marked redelivered)
-- ARGV[3]  the dead process's pod id; empty: the process itself hands back a record it no
--          longer holds (no liveness check)
-- ARGV[4]  the pod TTL in ms
-- Returns 1 when the message was handed back, 0 when the process is alive again or the
-- message is no longer held.
local last = redis.call('ZSCORE', KEYS[1], ARGV[3])
if last then
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  if tonumber(last) > now - tonumber(ARGV[4]) then
    return 0
  end
end
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('RPUSH', KEYS[4], ARGV[2])
return 1
