-- Hand back one message that a dead worker process held: remove it from that process's unacked
-- records and push it at the consumer end of its queue (taken next), in one step, only while
-- the process is still dead and only once (of two sweepers racing, the second finds nothing).
-- KEYS[1]  the dead process's liveness key (<prefix>:pod:<id>): must not exist
-- KEYS[2]  its unacked hash (delivery tag -> [message, exchange, routing key])
-- KEYS[3]  its unacked index zset (delivery tag -> time taken)
-- KEYS[4]  the queue list the message goes back to
-- ARGV[1]  delivery tag
-- ARGV[2]  the message to push (marked redelivered)
-- Returns 1 when the message was handed back, 0 when the process is alive again or the
-- message is no longer held.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('RPUSH', KEYS[4], ARGV[2])
return 1
