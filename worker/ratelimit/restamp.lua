-- After a reply: move the request's budget units to the moment its reply came back, and count
-- what the exchange said (cancelq.signals), in one call.
-- Units are spent before the request leaves (admit.lua, dispatch.lua); it reaches the exchange
-- later: a dispatched batch waits for a worker to take its message, and on a busy host any
-- request may wait for a CPU between spend and send (measured: up to ~100 ms). A window
-- counted from the spend then ends before the exchange's window, counted from arrival, does,
-- and the next window's units arrive inside it (measured: 21-26 in one second against 20).
-- The reply comes after the arrival, so a unit re-scored to it counts at least as long as the
-- exchange counts it; run before the spend's window ends (any reply within ~1 s), later
-- spends see it. A unit the window already dropped is added again: only later sends wait.
-- KEYS[1]  log      zset of units spent in the window (member unique, score ms)
-- KEYS[2]  signals  hash of the current signals bucket (field <lane>|<signal> -> count)
-- ARGV[1]  the lane's window in ms (the log expires after two)
-- ARGV[2]  ttl of the signals bucket in seconds, set when a field is first counted
-- ARGV[3]  k: how many (field, increment) pairs follow
-- ARGV[4 .. 3+2k]  the signal pairs; ARGV[4+2k ..] the request's units (log members)
-- Returns the number of units re-scored.
local counted = tonumber(ARGV[3])
for i = 0, counted - 1 do
  local n = tonumber(ARGV[5 + 2 * i])
  if redis.call('HINCRBY', KEYS[2], ARGV[4 + 2 * i], n) == n then
    redis.call('EXPIRE', KEYS[2], ARGV[2])
  end
end
local first = 4 + 2 * counted
if #ARGV < first then
  return 0
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
for i = first, #ARGV do
  redis.call('ZADD', KEYS[1], now, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
return #ARGV - first + 1
