-- Take units from a budget now, or say how long until they free; never parks anything.
-- For the kill switch's cancel-all, which has its own budget per (account, category).
-- KEYS[1]  log     zset of units spent in the window (member unique, score ms)
-- ARGV[1]  limit (units per window)
-- ARGV[2]  window in ms
-- ARGV[3]  unique member prefix for this take
-- Returns {1, 0} when the unit was taken, {0, ms until one frees} otherwise.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
if used < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3] .. '@' .. now)
  redis.call('PEXPIRE', KEYS[1], window * 2)
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], used - limit, used - limit, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - now}
