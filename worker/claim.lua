-- Claim a cancel identity for one request (idempotent dedup), renewing its lease; or say who
-- has it. Called before every exchange attempt of the request.
-- KEYS[1]  claim hash of the identity: owner, state (inflight|parked|done), lease (ms, Redis
--          clock), attempts, startedAt (ms, worker wall clock of the first attempt), heldIn and
--          heldAs (the unacked hash and delivery tag of the delivery that claimed it last)
-- KEYS[2]  outcome key of this request: when it exists the request has already finished
-- KEYS[3]  kill marker of the cancel's (account, category): scope -> enqueuedAt of the kill
-- ARGV[1]  request id
-- ARGV[2]  lease length in ms: a claim not renewed for this long is taken over
-- ARGV[3]  ttl of the claim hash in ms (a safety net; finish.lua sets the dedup ttl)
-- ARGV[4]  now, worker wall clock ms (recorded as startedAt on the first claim)
-- ARGV[5]  "1": this claim starts an exchange attempt (count it); "0": intake only
-- ARGV[6]  the calling worker process's unacked hash (kombu's record of what it holds)
-- ARGV[7]  delivery tag of the message being run ("": no fencing, a caller outside a worker)
-- ARGV[8]  (with fencing) the pods zset (pod id -> ms of its last heartbeat, worker/pods.py)
-- ARGV[9]  (with fencing) the calling worker process's pod id
-- ARGV[10] (with fencing) ms: the caller's last heartbeat must be at most this old ("0": not
--          checked). Others take the pod for dead, and hand back what it holds, once its beat
--          is a pod TTL old; a claim made with a fresher beat leaves the send the rest of the
--          TTL before any copy can be handed back and sent again
-- Returns {verdict, owner, attempts, startedAt, kills} (kills: the marker as a flat list,
-- empty when no kill ran) with verdict one of
--   "own"        this request holds the identity: go ahead (first claim, re-delivery, takeover)
--   "duplicate"  another request holds a live lease on it or has finished it: owner is that one
--   "finished"   this request already has a final outcome (a re-delivered copy): do nothing
--   "taken"      fencing: this delivery is no longer in this process's unacked hash (another
--                process took it over while this one was frozen or cut off): do nothing
--   "held"       another delivery of this very request is held right now (a copy the outbox
--                sweep pushed again, a repeated requestId): it will finish it; do nothing
--   "stale"      this process's own heartbeat is older than ARGV[10] (it was frozen or cut off
--                and has not beaten since): nothing changed; claim again after its next beat
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {'finished', ARGV[1], 0, 0, {}}
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- one read of the whole claim, one write back: each call from Lua costs Redis CPU
local held = redis.call('HMGET', KEYS[1], 'owner', 'state', 'lease', 'heldIn', 'heldAs',
                        'startedAt', 'attempts')
local owner, state, lease, held_in, held_as = held[1], held[2], held[3], held[4], held[5]
local started, attempts = held[6], tonumber(held[7] or '0')
if owner and owner ~= ARGV[1] and (state == 'done' or tonumber(lease or '0') > now) then
  return {'duplicate', owner, 0, 0, {}}
end
if ARGV[7] ~= '' then
  if redis.call('HEXISTS', ARGV[6], ARGV[7]) == 0 then
    return {'taken', ARGV[1], 0, 0, {}}
  end
  if ARGV[10] ~= '0'
      and tonumber(redis.call('ZSCORE', ARGV[8], ARGV[9]) or '0') < now - tonumber(ARGV[10]) then
    return {'stale', ARGV[1], 0, 0, {}}
  end
  if owner == ARGV[1] and held_in and held_as and (held_in ~= ARGV[6] or held_as ~= ARGV[7])
      and redis.call('HEXISTS', held_in, held_as) == 1 then
    return {'held', ARGV[1], 0, 0, {}}
  end
end
attempts = attempts + tonumber(ARGV[5])
local fields = {'attempts', attempts, 'lease', now + tonumber(ARGV[2])}
if owner ~= ARGV[1] then
  -- a new owner keeps the identity's first startedAt (its first attempt's time)
  fields[#fields + 1], fields[#fields + 2] = 'owner', ARGV[1]
  fields[#fields + 1], fields[#fields + 2] = 'state', 'inflight'
  if not started then
    started = ARGV[4]
    fields[#fields + 1], fields[#fields + 2] = 'startedAt', started
  end
end
if ARGV[7] ~= '' then
  fields[#fields + 1], fields[#fields + 2] = 'heldIn', ARGV[6]
  fields[#fields + 1], fields[#fields + 2] = 'heldAs', ARGV[7]
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {'own', ARGV[1], attempts, started, redis.call('HGETALL', KEYS[3])}
