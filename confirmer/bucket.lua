-- Token bucket of an account's REST fallback: take one token if there is one.
-- KEYS[1]  bucket hash (cancelq:confirm:bucket:<account>): fields tokens, at (ms)
-- ARGV[1]  refill rate (tokens per second)
-- ARGV[2]  capacity (tokens)
-- Returns 1 when a token was taken, 0 when the budget is spent. Time is the server's TIME.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate / 1000)
local taken = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return taken
