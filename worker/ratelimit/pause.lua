-- Pause a lane: nothing leaves it (fast path or dispatch) for the next ARGV[1] ms.
-- The exchange's reset time is turned into a duration by the caller and anchored here on the
-- Redis clock, the one clock admit.lua and dispatch.lua compare it with.
-- KEYS[1]  pause   string: ms (Redis clock) until which the lane is paused
-- KEYS[2]  why     string: what the exchange said (``10006``, ``http_429``), for operators
-- ARGV[1]  pause length in ms
-- ARGV[2]  the reason stored in KEYS[2]
-- Returns the ms (Redis clock) the lane is paused until.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local untill = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if untill > current then
  redis.call('SET', KEYS[1], untill, 'PX', tonumber(ARGV[1]) + 1000)
  redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[1]) + 1000)
  return untill
end
return current
