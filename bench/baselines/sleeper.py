"""Sleeper: a limiter that waits inside the task. Each cancel takes a unit from its key's
sliding 1 s window in Redis (shared by all processes, so it is never over) and, when there is
none, sleeps in the task until one frees: the worker slot is held while it waits."""

from __future__ import annotations

import os
import time
from typing import Any

import redis
import requests

from bench.baselines.common import (
    CANCEL_PATH,
    OutcomeWriter,
    exchange_body,
    make_app,
    now_ms,
    signed_headers,
)
from cancelq.contract import TASK_NAME

# KEYS[1] window log (zset); ARGV[1] limit, ARGV[2] window ms, ARGV[3] member
# Returns 0 when a unit was taken, else ms until the oldest unit frees.
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window * 2)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(tonumber(oldest[2]) + window - now, 1)
"""
WINDOW_MS = 1030
MAX_WAIT_S = 600.0

app, config = make_app("sleeper")
outcomes = OutcomeWriter(config)
_state: dict[int, tuple[redis.Redis, Any, requests.Session]] = {}


def _resources() -> tuple[redis.Redis, Any, requests.Session]:
    pid = os.getpid()
    if pid not in _state:
        client = redis.Redis.from_url(config.redis_url)
        _state[pid] = (client, client.register_script(TAKE), requests.Session())
    return _state[pid]


def _take(alias: str, member: str) -> None:
    _, take, _ = _resources()
    limit = int(config.accounts[alias].rate_limit_per_s)
    deadline = time.monotonic() + MAX_WAIT_S
    while time.monotonic() < deadline:
        wait_ms = int(take(keys=[f"bench:sleeper:{alias}"], args=[limit, WINDOW_MS, member]))
        if wait_ms == 0:
            return
        time.sleep(wait_ms / 1000)


@app.task(name=TASK_NAME, ignore_result=True)  # type: ignore[untyped-decorator]
def cancel_order(**fields: Any) -> None:
    started = now_ms()
    _take(fields["account"], str(fields.get("requestId")))
    _, _, http = _resources()
    body = exchange_body(fields)
    headers = signed_headers(config.accounts[fields["account"]], body)
    sent = now_ms()
    resp = http.post(config.base_url + CANCEL_PATH, headers=headers, data=body, timeout=10)
    code = resp.json().get("retCode")
    outcomes.write(fields, code, {"startedAt": started, "sentAt": sent, "answeredAt": now_ms()})
