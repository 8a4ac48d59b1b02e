"""One snapshot of cancelq from Redis alone: no worker, no Prometheus, read commands only.

Two pipelined round trips. The first reads the Redis clock (``TIME``), the lanes holding parked
cancels (``lanes:ready``), the halts, the last minute's exchange signals (``cancelq/signals.py``),
the queue, the outbox, the dead letters and the worker registry. The second reads, per lane,
its backlog, budget, log and pause, and per worker process its unacked hash (what it holds).

Commands used, all read-only (``cancelq top`` runs under an ACL user with only these):
``TIME ZRANGE ZCARD ZCOUNT HGETALL HMGET HVALS GET LLEN XLEN``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis

from cancelq.console.inflight import count_in_flight
from cancelq.errors import StoreError
from cancelq.halts import Halt, parse_halts
from cancelq.keys import Keys
from cancelq.replies import as_text, time_ms
from cancelq.signals import AUTH_FAILED, RATE_LIMITED, SENT, minute_keys, sum_buckets

#: Exact read-only commands the snapshot issues (the README's ACL line lists the same).
COMMANDS: Final = (
    "TIME",
    "ZRANGE",
    "ZCARD",
    "ZCOUNT",
    "HGETALL",
    "HMGET",
    "HVALS",
    "GET",
    "LLEN",
    "XLEN",
)
CONFIG_FIELDS: Final = ("limit", "window", "batch", "per_item", "exchange_limit")
NO_LANE: Final = "-"  # the category shown for a halted account with no lane seen yet


@dataclass(frozen=True)
class LaneView:
    """One lane (account, category) as an operator sees it."""

    account: str
    category: str
    parked: int = 0
    limit: int | None = None  # units per window (the lower of ours and the exchange's)
    window_ms: int = 1000
    batch: int = 1
    per_item: bool = True
    used_1s: int = 0  # units spent in the last second
    sent_1m: int = 0  # units that reached the exchange in the last minute
    rate_limited_1m: int = 0  # requests answered 10006 / 30035 / HTTP 429
    auth_failed_1m: int = 0  # requests answered 10003 / 10004 / 10005 / 10027
    paused_until_ms: int = 0  # Redis clock; 0: not paused
    pause_reason: str = ""
    halt: Halt | None = None
    in_flight: int = 0  # cancels worker processes hold (taken, not finished)

    @property
    def name(self) -> str:
        return f"{self.account}:{self.category}"

    def paused(self, now_ms: int) -> bool:
        return self.paused_until_ms > now_ms

    def rate_per_s(self) -> float | None:
        """Cancels per second the lane's budget lets out (batches count per request or item)."""
        if not self.limit:
            return None
        per_window = self.limit * (1 if self.per_item else max(self.batch, 1))
        return per_window * 1000 / max(self.window_ms, 1)

    def eta_s(self, now_ms: int) -> float | None:
        """Seconds until the backlog has drained at full budget; None: never (halted) or
        unknown (no budget recorded)."""
        if self.halt is not None and self.parked:
            return None
        if not self.parked:
            return 0.0
        rate = self.rate_per_s()
        if rate is None:
            return None
        pause_s = max(self.paused_until_ms - now_ms, 0) / 1000
        return pause_s + self.parked / rate

    def used_1m_share(self) -> float | None:
        """Share of the last minute's budget the lane spent (0..1)."""
        if not self.limit:
            return None
        return self.sent_1m / (self.limit * 60_000 / max(self.window_ms, 1))


@dataclass(frozen=True)
class Worker:
    pod: str
    beat_age_s: float


@dataclass(frozen=True)
class Snapshot:
    now_ms: int  # Redis clock
    lanes: list[LaneView]
    queue_depth: int
    outbox: int
    outbox_oldest_s: float | None
    dead_letters: int
    workers: list[Worker]
    halts: dict[str, Halt] = field(default_factory=dict)

    def alive(self, ttl_s: float) -> list[Worker]:
        return [w for w in self.workers if w.beat_age_s <= ttl_s]


def read_snapshot(client: redis.Redis, keys: Keys) -> Snapshot:
    """Read everything ``cancelq top`` shows; lanes unordered (``order.in_trouble_first``)."""
    try:
        return _read(client, keys)
    except redis.RedisError as exc:
        raise StoreError(f"reading the snapshot failed: {exc}") from exc


def _read(client: redis.Redis, keys: Keys) -> Snapshot:
    buckets = minute_keys(keys, int(time.time() * 1000))  # the workers' clock, as they write
    with client.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.zrange(keys.lanes_ready(), 0, -1)
        pipe.hgetall(keys.halts())
        for bucket in buckets:
            pipe.hgetall(bucket)
        pipe.llen(keys.queue)
        pipe.zcard(keys.outbox())
        pipe.zrange(keys.outbox(), 0, 0, withscores=True)
        pipe.xlen(keys.dead_letters())
        pipe.zrange(keys.pods(), 0, -1, withscores=True)
        first = pipe.execute()
    clock, ready, raw_halts = first[0], first[1], first[2]
    signals = sum_buckets(first[3 : 3 + len(buckets)])
    depth, outbox, oldest, dead, pods = first[3 + len(buckets) :]
    now_ms = time_ms(clock)
    halts = parse_halts(raw_halts)
    names = sorted({as_text(n) for n in ready} | set(signals))
    pod_ids = [as_text(p) for p, _ in pods]
    lanes = _read_lanes(client, keys, names, pod_ids, now_ms)
    views = [
        _view(name, lane, signals.get(name, {}), halts, in_flight)
        for name, lane, in_flight in lanes
    ]
    seen = {v.account for v in views}
    views += [LaneView(a, NO_LANE, halt=h) for a, h in halts.items() if a not in seen]
    return Snapshot(
        now_ms=now_ms,
        lanes=views,
        queue_depth=int(depth),
        outbox=int(outbox),
        outbox_oldest_s=max(now_ms - float(oldest[0][1]), 0) / 1000 if oldest else None,
        dead_letters=int(dead),
        workers=[Worker(as_text(p), max(now_ms - float(ms), 0) / 1000) for p, ms in pods],
        halts=halts,
    )


LaneRead = tuple[str, list[Any], int]


def _read_lanes(
    client: redis.Redis, keys: Keys, names: Sequence[str], pods: Sequence[str], now_ms: int
) -> list[LaneRead]:
    """Per lane: backlog, budget, log, pause and its reason; per worker: what it holds."""
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.zcard(keys.lane(name))
            pipe.hmget(keys.lane_config(name), [*CONFIG_FIELDS])
            pipe.zcount(keys.lane_log(name), now_ms - 1000, "+inf")
            pipe.get(keys.lane_pause(name))
            pipe.get(keys.lane_pause_reason(name))
        for pod in pods:
            pipe.hvals(keys.pod_unacked(pod))
        replies = pipe.execute()
    per_lane = 5
    held = count_in_flight(v for values in replies[len(names) * per_lane :] for v in values)
    return [
        (name, replies[i * per_lane : (i + 1) * per_lane], held.get(name, 0))
        for i, name in enumerate(names)
    ]


def _view(
    name: str,
    lane: list[Any],
    signals: Mapping[str, int],
    halts: Mapping[str, Halt],
    in_flight: int,
) -> LaneView:
    parked, cfg, used, paused, why = lane
    account, _, category = name.rpartition(":")
    limit, window, batch, per_item, exchange_limit = (
        None if v is None else as_text(v) for v in cfg
    )
    budget = int(limit) if limit else None
    if budget is not None and exchange_limit:
        budget = min(budget, int(exchange_limit))
    return LaneView(
        account=account,
        category=category,
        parked=int(parked),
        limit=budget,
        window_ms=int(window) if window else 1000,
        batch=int(batch) if batch else 1,
        per_item=per_item != "0",
        used_1s=int(used),
        sent_1m=signals.get(SENT, 0),
        rate_limited_1m=signals.get(RATE_LIMITED, 0),
        auth_failed_1m=signals.get(AUTH_FAILED, 0),
        paused_until_ms=int(as_text(paused)) if paused is not None else 0,
        pause_reason=as_text(why) if why is not None else "",
        halt=halts.get(account),
        in_flight=in_flight,
    )
