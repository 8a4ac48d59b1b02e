"""Load: place orders, offer cancels (a burst, or paced at a fixed rate), wait for outcomes,
read the simulator's request log. Every loop here is bounded by a count or a deadline."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from bench.stack import Stack
from cancelq.harness.accounts import AccountSpec
from cancelq.keys import Keys
from cancelq.producers.client import CancelProducer
from cancelq.replies import as_text

ORDER_CHUNK = 2000
ENQUEUE_CHUNK = 1000
KEYS = Keys()


@dataclass
class Offered:
    """Cancels offered: request id -> (orderLinkId, harness enqueue time in ms, float)."""

    ids: list[str]
    link: dict[str, str]
    enqueued_ms: dict[str, float]


def place_orders(stack: Stack, key: AccountSpec, count: int, category: str = "spot") -> list[str]:
    """``count`` open orders for ``key``; returns their orderLinkIds."""
    tag = uuid.uuid4().hex[:8]
    links = [f"b{tag}-{i}" for i in range(count)]
    for at in range(0, count, ORDER_CHUNK):
        rows = [
            {"orderLinkId": link, "price": "100", "qty": "1"}
            for link in links[at : at + ORDER_CHUNK]
        ]
        stack.sim.admin.place_orders(rows, category=category, symbol="BTCUSDT", api_key=key.api_key)
    return links


def _fields(key: AccountSpec, link: str, category: str) -> dict[str, Any]:
    return {"account": key.alias, "category": category, "symbol": "BTCUSDT", "orderLinkId": link}


def burst(stack: Stack, plan: Sequence[tuple[AccountSpec, str]], category: str = "spot") -> Offered:
    """Offer every (key, orderLinkId) at once: pipelined LPUSHes, 1,000 per round trip."""
    producer = CancelProducer(stack.redis)
    offered = Offered([], {}, {})
    for at in range(0, len(plan), ENQUEUE_CHUNK):
        chunk = plan[at : at + ENQUEUE_CHUNK]
        now = time.time() * 1000
        ids = producer.enqueue_many([_fields(k, link, category) for k, link in chunk])
        for rid, (_, link) in zip(ids, chunk, strict=True):
            offered.ids.append(rid)
            offered.link[rid] = link
            offered.enqueued_ms[rid] = now
    return offered


def paced(
    stack: Stack,
    plan: Sequence[tuple[AccountSpec, str]],
    rate_per_s: float,
    category: str = "spot",
    tick: Callable[[int], None] | None = None,
) -> Offered:
    """Offer one cancel every 1/rate s (open loop: a late cancel does not delay the next)."""
    producer = CancelProducer(stack.redis)
    offered = Offered([], {}, {})
    start = time.perf_counter()
    for i, (key, link) in enumerate(plan):
        delay = start + i / rate_per_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        now = time.time() * 1000
        (rid,) = producer.enqueue_many([_fields(key, link, category)])
        offered.ids.append(rid)
        offered.link[rid] = link
        offered.enqueued_ms[rid] = now
        if tick is not None and i % 50 == 0:
            tick(i)
    return offered


def read_outcomes(client: redis.Redis, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for at in range(0, len(ids), 1000):
        chunk = ids[at : at + 1000]
        for rid, raw in zip(
            chunk, client.mget([f"cancelq:outcome:{r}" for r in chunk]), strict=True
        ):
            if raw is not None:
                out[rid] = json.loads(raw)
    return out


def wait_outcomes(
    stack: Stack, offered: Offered, timeout_s: float, poll_s: float = 0.02
) -> dict[str, dict[str, Any]]:
    """Outcomes of the offered cancels, waiting at most ``timeout_s`` (missing ones absent)."""
    deadline = time.monotonic() + timeout_s
    done: dict[str, dict[str, Any]] = {}
    pending = list(offered.ids)
    while pending and time.monotonic() < deadline:
        got = read_outcomes(stack.redis, pending)
        done.update(got)
        pending = [r for r in pending if r not in got]
        if pending:
            time.sleep(poll_s)
    return done


def wait_drained(
    stack: Stack, timeout_s: float, queue: str = "cancelq", poll_s: float = 0.002
) -> tuple[float, int]:
    """Wait until the queue is empty, nothing is unacked (every worker process's unacked
    hash: each has its own) and nothing is parked in a lane (cancelq's coalesced batches);
    returns (time.time(), the Redis round trips its polls took: up to four a poll, so a cost
    figure polls slower, ``poll_s``)."""
    deadline = time.monotonic() + timeout_s
    trips = 0
    while time.monotonic() < deadline:
        trips += 1
        if stack.redis.llen(queue) == 0:
            trips += 2  # the registry, then every unacked hash in one pipeline
            if unacked(stack.redis) == 0:
                trips += 1
                if not parked(stack.redis):
                    return time.time(), trips
        time.sleep(poll_s)
    raise TimeoutError(f"queue not drained in {timeout_s}s")


def parked(client: redis.Redis) -> bool:
    """Does some lane hold parked cancels? With ZRANDMEMBER, which no worker sends, so
    bench.measure can leave it out of the workers' Redis cost."""
    return client.zrandmember(KEYS.lanes_ready()) is not None


def unacked(client: redis.Redis) -> int:
    """Messages taken and not acknowledged, every worker process's hash and kombu's shared
    one. With ZREVRANGE, which no worker sends, so bench.measure can leave it out of the
    workers' Redis cost (as LLEN and HLEN)."""
    registry: list[Any] = client.zrevrange(KEYS.pods(), 0, -1)
    pods = [as_text(pod) for pod in registry]
    with client.pipeline(transaction=False) as pipe:
        pipe.hlen(KEYS.unacked)
        for pod in pods:
            pipe.hlen(KEYS.pod_unacked(pod))
        return sum(int(n) for n in pipe.execute())


def sim_records(
    stack: Stack, key: AccountSpec | None = None, since_ms: float = 0
) -> list[dict[str, Any]]:
    """The simulator's log of cancel requests (both endpoints) since ``since_ms``."""
    rows = stack.sim.admin.records(api_key=key.api_key if key else None, since_ms=since_ms or None)
    return [r for r in rows if r["endpoint"] in ("order/cancel", "order/cancel-batch")]


def receipt_times(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """orderLinkId -> the simulator's arrival time (ms) of the request carrying it."""
    out: dict[str, float] = {}
    for rec in records:
        for name, value in rec.get("ids", []):
            if name == "orderLinkId":
                out.setdefault(str(value), float(rec["time_ms"]))
    return out


def max_in_window(records: Sequence[dict[str, Any]], window_ms: float = 1000.0) -> int:
    """Most cancels (batch items counted) any [t, t + window) held, over both endpoints."""
    points = sorted((float(r["time_ms"]), int(r.get("items") or 1)) for r in records)
    best = total = lo = 0
    for t, weight in points:
        total += weight
        while points[lo][0] <= t - window_ms:
            total -= points[lo][1]
            lo += 1
        best = max(best, total)
    return best


def place_orders_for(
    stack: Stack, plan: Sequence[AccountSpec], category: str = "spot"
) -> list[str]:
    """One open order per entry of ``plan`` (a key may repeat); returns their orderLinkIds."""
    tag = uuid.uuid4().hex[:8]
    links = [f"b{tag}-{i}" for i in range(len(plan))]
    for at in range(0, len(plan), ORDER_CHUNK):
        rows = [
            {"orderLinkId": link, "price": "100", "qty": "1", "api_key": key.api_key}
            for key, link in zip(
                plan[at : at + ORDER_CHUNK], links[at : at + ORDER_CHUNK], strict=True
            )
        ]
        stack.sim.admin.place_orders(rows, category=category, symbol="BTCUSDT")
    return links
