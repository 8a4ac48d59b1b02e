-- One heartbeat of a worker process: its entry in the pods zset gets the Redis clock (one clock
-- for all pods). A pod whose last beat is older than the pod TTL is dead to the others
-- (takeover.py finds them, takeover.lua checks again in the step of each hand-back).
-- KEYS[1]  pods zset (pod id -> ms of its last heartbeat)
-- ARGV[1]  pod id
-- Returns the Redis clock in ms.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
return now
