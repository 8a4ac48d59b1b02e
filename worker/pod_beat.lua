-- One heartbeat of a worker process: its liveness key with a short TTL, and its entry in the
-- pods zset with the Redis clock (one clock for all pods).
-- KEYS[1]  the pod's liveness key (<prefix>:pod:<id>)
-- KEYS[2]  pods zset (pod id -> ms of its last heartbeat)
-- ARGV[1]  pod id
-- ARGV[2]  TTL of the liveness key in ms
-- Returns the Redis clock in ms.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('SET', KEYS[1], now, 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
return now
