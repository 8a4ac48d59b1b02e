-- Send parked cancels of every lane whose budget allows it now: fair across lanes (the lane
-- ready longest goes first, and a served lane moves behind the others), batched within one.
-- Each batch becomes one ready-made Celery message for the internal submit task, pushed at the
-- consumer end of the queue, in the same atomic step that spends its budget: nothing waits in
-- worker memory and nothing is lost if a dispatcher dies. Lane keys derive from ARGV[1]
-- (single Redis instance, not Cluster).
-- KEYS[1]  ready   zset of lanes (member = lane name, score = ms when worth a look)
-- KEYS[2]  queue   the Celery queue list
-- KEYS[3]  halts   hash of halted accounts (alias -> who/why): their lanes are not served
-- ARGV[1]  key prefix: lane keys are <prefix>:lane:<name>[:log|:pause|:cfg], items
--          <prefix>:item:<request id>
-- ARGV[2]  most lanes to serve in this call
-- ARGV[3]  task name of the submit task
-- ARGV[4]  queue name (routing key)
-- ARGV[5]  unique id prefix for the messages of this call
-- ARGV[6]  ttl in ms of parked items and lane keys: a halted lane's are renewed with it, so a
--          halt of any length loses nothing
-- ARGV[7]  ms until a halted lane is looked at again (``cancelq resume`` makes it due at once)
-- Returns {cancels dispatched, ms until the next lane is worth a look (-1: none parked),
--          lanes served}
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local prefix, task, queue, idp = ARGV[1], ARGV[3], ARGV[4], ARGV[5]
local sent, made = 0, 0

-- the message of one batch; "spent"/"units" name its budget units in the lane's log
-- (<id>:1..units), which the submit task moves to its send time (restamp.lua)
local function message(lane, id, payloads, units)
  local body = '[[],{"lane":' .. cjson.encode(lane) .. ',"items":[' ..
    table.concat(payloads, ',') .. '],"spent":"' .. id .. '","units":' .. units ..
    '},{"callbacks":null,"errbacks":null,"chain":null,"chord":null}]'
  return '{"body":' .. cjson.encode(body) .. ',"content-encoding":"utf-8",' ..
    '"content-type":"application/json","headers":{"lang":"py","task":' .. cjson.encode(task) ..
    ',"id":"' .. id .. '","shadow":null,"eta":null,"expires":null,"group":null,' ..
    '"group_index":null,"retries":0,"timelimit":[null,null],"root_id":"' .. id ..
    '","parent_id":null,"argsrepr":"()","kwargsrepr":"{}","origin":"cancelq-dispatch",' ..
    '"ignore_result":true},"properties":{"correlation_id":"' .. id .. '","reply_to":"",' ..
    '"delivery_mode":2,"delivery_info":{"exchange":"","routing_key":' .. cjson.encode(queue) ..
    '},"priority":0,"delivery_tag":"' .. id .. '"}}'
end

local function spend(log, id, units)
  for k = 1, units do
    redis.call('ZADD', log, now, id .. ':' .. k)
  end
end

-- a halted account's lane keeps its cancels (parked, not sent) and their ttl until resume
local function hold(base, name)
  local ttl = tonumber(ARGV[6])
  if redis.call('PTTL', base) < ttl / 2 then
    for _, id in ipairs(redis.call('ZRANGE', base, 0, -1)) do
      redis.call('PEXPIRE', prefix .. ':item:' .. id, ttl)
    end
    redis.call('PEXPIRE', base, ttl)
  end
  if redis.call('ZCARD', base) == 0 then
    redis.call('ZREM', KEYS[1], name)
  else
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[7]), name)
  end
end

local function serve(name)
  local base = prefix .. ':lane:' .. name
  local account = string.match(name, '^(.+):[^:]+$')
  if account and redis.call('HEXISTS', KEYS[3], account) == 1 then
    return hold(base, name)
  end
  local log, pause = base .. ':log', base .. ':pause'
  local cfg = redis.call('HMGET', base .. ':cfg', 'limit', 'window', 'batch', 'per_item')
  local cfg2 = redis.call('HGET', base .. ':cfg', 'exchange_limit')
  local limit, window = tonumber(cfg[1] or '1'), tonumber(cfg[2] or '1000')
  if cfg2 then limit = math.min(limit, tonumber(cfg2)) end
  local batch, per_item = tonumber(cfg[3] or '1'), cfg[4] ~= '0'
  local paused = tonumber(redis.call('GET', pause) or '0')
  redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
  local used = redis.call('ZCARD', log)
  local free = limit - used
  if paused <= now and free > 0 then
    local capacity = free
    if not per_item then capacity = free * batch end
    local due = redis.call('ZRANGEBYSCORE', base, '-inf', now_us, 'LIMIT', 0, capacity)
    local i = 1
    while i <= #due do
      local ids, payloads = {}, {}
      for j = i, math.min(i + batch - 1, #due) do
        local item = prefix .. ':item:' .. due[j]
        local payload = redis.call('GET', item)
        redis.call('ZREM', base, due[j])
        redis.call('DEL', item)
        if payload then
          ids[#ids + 1] = due[j]
          payloads[#payloads + 1] = payload
        end
      end
      if #payloads > 0 then
        local units = 1
        if per_item then units = #payloads end
        made = made + 1
        local id = idp .. '-' .. made
        redis.call('RPUSH', KEYS[2], message(name, id, payloads, units))
        spend(log, id, units)
        used = used + units
        sent = sent + #payloads
      end
      i = i + batch
    end
    redis.call('PEXPIRE', log, window * 2)
  end
  -- look again when a unit frees, the pause ends and the first parked cancel may go
  if redis.call('ZCARD', base) == 0 then
    redis.call('ZREM', KEYS[1], name)
    return
  end
  local ready = math.max(now + 1, paused)
  if used >= limit then
    local oldest = redis.call('ZRANGE', log, used - limit, used - limit, 'WITHSCORES')
    if oldest[2] then ready = math.max(ready, tonumber(oldest[2]) + window) end
  end
  local head = redis.call('ZRANGE', base, 0, 0, 'WITHSCORES')
  ready = math.max(ready, math.floor(tonumber(head[2]) / 1000))
  redis.call('ZADD', KEYS[1], ready, name)
end

local lanes = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, name in ipairs(lanes) do
  serve(name)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if nxt[2] then
  return {sent, math.max(tonumber(nxt[2]) - now, 0), #lanes}
end
return {sent, -1, #lanes}
