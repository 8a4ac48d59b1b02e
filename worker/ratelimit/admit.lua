-- Admit one cancel now against its lane's budget (fast path), or park it in the lane.
-- A lane is one (account, category): its budget is a sliding-window log on the Redis clock,
-- one clock for every pod. dispatch.lua sends parked cancels when the budget allows.
-- KEYS[1]  log     zset of units spent in the window (member unique, score ms)
-- KEYS[2]  lane    zset of parked request ids (score = not-before in microseconds: FIFO)
-- KEYS[3]  pause   string: ms until which the exchange told us to stop (10006 / 429)
-- KEYS[4]  ready   zset of lanes with parked cancels (member = lane name, score = ready ms)
-- KEYS[5]  item    string: the parked cancel's JSON (what dispatch puts in the message)
-- KEYS[6]  config  hash of the lane: limit, window, batch, per_item (read by dispatch.lua),
--                  exchange_limit (Lanes.observe_limit); no ttl
-- KEYS[7]  claim   dedup claim hash of the cancel: its lease is extended while it is parked
-- KEYS[8]  halts   hash of halted accounts (alias -> who/why): a halted account never sends,
--                  its cancels park until ``cancelq resume``
-- ARGV[1]  limit (units per window)
-- ARGV[2]  window in ms
-- ARGV[3]  request id
-- ARGV[4]  cancel JSON
-- ARGV[5]  lane name (member of the ready set)
-- ARGV[6]  delay in ms before it may be sent (0 = as soon as the budget allows)
-- ARGV[7]  batch size of the category (10 spot, 20 others; 1 = never batch)
-- ARGV[8]  "1": a batch costs one unit per item; "0": one unit per request
-- ARGV[9]  ttl in ms of parked items and lane keys (a safety net, far beyond any wait)
-- ARGV[10] claim lease in ms, renewed when the cancel is admitted
-- ARGV[11] coalesce window in ms (0: never): park it even when the budget allows now if the
--          lane spent a unit (or saw a reply) this recently, so a backlog on a busy lane leaves
--          in batches; an idle lane has nothing to batch with, so its cancel goes at once. The
--          lane is then due when a batch is parked, or this long after (gathering the rest)
-- ARGV[12] account alias (the field of KEYS[8])
-- ARGV[13] pub/sub channel told when this parking makes a lane ready sooner than every lane
--          dispatchers already wait for (they sleep until the earliest; "" = tell nobody)
-- ARGV[14] (optional) the claim's attempts when the caller has just claimed this cancel for
--          this request in the same script (the intake): the claim is not read again
-- Returns {1, attempts, unit}: send now (a unit is spent, the log's member named unit; the
--         claim counts this attempt), or
--         {0, delay}: parked (the claim's lease now covers the wait).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local delay = tonumber(ARGV[6])
-- the lane's config for dispatch.lua, written only when it changed (one read a call instead
-- of three writes: each call from Lua costs Redis CPU); it has no ttl, one small hash a lane
local cfg = redis.call('HMGET', KEYS[6], 'limit', 'window', 'batch', 'per_item',
                       'exchange_limit')
if tonumber(cfg[1]) ~= limit or tonumber(cfg[2]) ~= window or cfg[3] ~= ARGV[7]
   or cfg[4] ~= ARGV[8] then
  redis.call('HSET', KEYS[6], 'limit', limit, 'window', window, 'batch', ARGV[7],
             'per_item', ARGV[8])
end
-- the exchange may announce a lower limit (X-Bapi-Limit) than configured: obey the lower
limit = math.min(limit, tonumber(cfg[5] or limit))
-- the caller claimed this cancel in the same script (intake.lua): owned, attempts known
local known = tonumber(ARGV[14] or '')

local coalesce = tonumber(ARGV[11] or '0')
local busy = coalesce > 0 and redis.call('ZCOUNT', KEYS[1], now - coalesce, '+inf') > 0
local halted = redis.call('HEXISTS', KEYS[8], ARGV[12]) == 1
if delay == 0 and not busy and not halted and tonumber(redis.call('GET', KEYS[3]) or '0') <= now
   and redis.call('ZCOUNT', KEYS[2], '-inf', now_us) == 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  if redis.call('ZCARD', KEYS[1]) < limit then
    local unit = ARGV[3] .. '@' .. now
    redis.call('ZADD', KEYS[1], now, unit)
    redis.call('PEXPIRE', KEYS[1], window * 2)
    local attempts = 0
    if known then
      attempts = known + 1
      redis.call('HSET', KEYS[7], 'attempts', attempts, 'lease', now + tonumber(ARGV[10]),
                 'state', 'inflight')
    elseif redis.call('HGET', KEYS[7], 'owner') == ARGV[3] then
      attempts = redis.call('HINCRBY', KEYS[7], 'attempts', 1)
      redis.call('HSET', KEYS[7], 'lease', now + tonumber(ARGV[10]), 'state', 'inflight')
    end
    return {1, attempts, unit}
  end
end

redis.call('SET', KEYS[5], ARGV[4], 'PX', ARGV[9])
redis.call('ZADD', KEYS[2], now_us + delay * 1000, ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[9])
local ready_at = now + delay
if busy and delay == 0 and not halted then
  -- parked to join a batch: the lane is worth a look once a batch is parked, or after the
  -- coalesce window gathered what comes meanwhile (a dispatcher woken at once sends batches
  -- of one: measured, 1,850 requests for 2,000 cancels of a burst)
  if redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[7]) then
    ready_at = now + coalesce
  end
end
local earliest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
if redis.call('ZADD', KEYS[4], 'LT', 'CH', ready_at, ARGV[5]) == 1 and (ARGV[13] or '') ~= ''
   and (earliest[2] == nil or ready_at < tonumber(earliest[2])) then
  redis.call('PUBLISH', ARGV[13], ARGV[5])
end
if known or redis.call('HGET', KEYS[7], 'owner') == ARGV[3] then
  redis.call('HSET', KEYS[7], 'lease', now + tonumber(ARGV[9]), 'state', 'parked')
  redis.call('HDEL', KEYS[7], 'heldIn', 'heldAs')  -- the lane holds it now, no delivery
end
return {0, delay}
