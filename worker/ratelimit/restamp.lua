-- Move a request's budget units to the moment its reply came back.
-- Units are spent before the request leaves (admit.lua, dispatch.lua); it reaches the exchange
-- later: a dispatched batch waits for a worker to take its message, and on a busy host any
-- request may wait for a CPU between spend and send (measured: up to ~100 ms). A window
-- counted from the spend then ends before the exchange's window, counted from arrival, does,
-- and the next window's units arrive inside it (measured: 21-26 in one second against 20).
-- The reply comes after the arrival, so a unit re-scored to it counts at least as long as the
-- exchange counts it; run before the spend's window ends (any reply within ~1 s), later
-- spends see it. A unit the window already dropped is added again: only later sends wait.
-- KEYS[1]  log     zset of units spent in the window (member unique, score ms)
-- KEYS[2]  config  hash of the lane (its window)
-- ARGV[1..] the request's units (log members)
-- Returns the number of units re-scored.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local window = tonumber(redis.call('HGET', KEYS[2], 'window') or '1030')
for _, unit in ipairs(ARGV) do
  redis.call('ZADD', KEYS[1], now, unit)
end
redis.call('PEXPIRE', KEYS[1], window * 2)
return #ARGV
