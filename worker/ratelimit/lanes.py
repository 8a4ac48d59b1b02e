"""Lanes: one budget and one queue of parked cancels per (account, category), in Redis.

A cancel whose lane has budget now is admitted at once (the fast path: one round trip, sent
by the task that took it). Otherwise it is parked: it waits in Redis, not in a worker, so a hot
key never holds worker slots other keys need. Dispatchers in every worker send parked cancels
as budget frees (``dispatch.lua``), batched when several are due.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Final

import redis
from redis.commands.core import Script

from cancelq.errors import StoreError
from cancelq.keys import Keys
from cancelq.replies import as_text
from cancelq.signals import SignalCounts
from cancelq.worker.scripted_pipeline import queue_script

#: Bybit's cancel-batch caps: 10 items for spot, 20 for the others.
BATCH_CAP: Final = {"spot": 10, "linear": 20, "inverse": 20, "option": 20}
SUBMIT_TASK: Final = "cancelq.submit"
#: A lane that spent a unit this recently is busy: a late cancel there joins the next batch.
#: On an idle lane it has nothing to batch with, and a batch of one costs more than a cancel
#: sent at once (measured: 1,000 keys, 400 cancels: 77 vs 42 Redis commands per cancel).
COALESCE_BUSY_MS: Final = 20
#: A halted lane is looked at again this often (resume makes it due at once; this is the net).
HALT_RELOOK_MS: Final = 1000


@dataclass(frozen=True)
class Budget:
    """A lane's budget: ``limit`` units per ``window_ms``; batches of up to ``batch``."""

    limit: int
    window_ms: int
    batch: int
    per_item: bool

    @classmethod
    def for_account(
        cls,
        rate_per_s: float,
        category: str,
        *,
        margin: float,
        pad_ms: int,
        batching: bool,
        per_item: bool,
    ) -> Budget:
        limit = max(math.floor(rate_per_s * (1 - margin)), 1)
        batch = BATCH_CAP[category] if batching else 1
        return cls(limit=limit, window_ms=1000 + pad_ms, batch=batch, per_item=per_item)


@dataclass(frozen=True)
class Admission:
    admitted: bool
    wait_ms: int  # admitted: the claim's attempts; parked: the delay
    unit: str | None = None  # admitted: the budget unit spent (its member in the lane's log)


@dataclass(frozen=True)
class DispatchResult:
    dispatched: int
    next_ms: int  # -1: nothing parked anywhere
    lanes: int


def parse_admission(raw: Sequence[object]) -> Admission:
    """An Admission from ``admit.lua``'s reply: {1, attempts, unit} admitted, {0, delay}
    parked."""
    admitted, wait_ms = raw[0], raw[1]
    unit = as_text(raw[2]) if len(raw) > 2 else None
    return Admission(bool(admitted), int(str(wait_ms)), unit)


def lane_name(account: str, category: str) -> str:
    return f"{account}:{category}"


def _script(name: str) -> str:
    return resources.files("cancelq.worker.ratelimit").joinpath(name).read_text(encoding="utf-8")


class Lanes:
    def __init__(self, client: redis.Redis, keys: Keys, *, park_ttl_s: int, lease_ms: int) -> None:
        self._redis = client
        self._keys = keys
        self._park_ttl_ms = park_ttl_s * 1000
        self._lease_ms = lease_ms
        self._admit = client.register_script(_script("admit.lua"))
        self._dispatch = client.register_script(_script("dispatch.lua"))
        self._pause = client.register_script(_script("pause.lua"))
        self._acquire = client.register_script(_script("acquire.lua"))
        self._restamp = client.register_script(_script("restamp.lua"))

    @property
    def client(self) -> redis.Redis:
        """The Redis client the lanes live in (a dispatcher subscribes to wake-ups on it)."""
        return self._redis

    def admit(
        self,
        *,
        account: str,
        category: str,
        budget: Budget,
        request_id: str,
        item_json: str,
        delay_ms: int,
        claim_key: str,
        coalesce: bool = False,
    ) -> Admission:
        """Spend a unit now (admitted) or park the cancel; ``coalesce`` parks it when the lane
        is busy (a unit in the last ``COALESCE_BUSY_MS``), so the dispatcher sends it in the
        lane's next batch."""
        keys, args = self.admit_call(
            account=account,
            category=category,
            budget=budget,
            request_id=request_id,
            item_json=item_json,
            delay_ms=delay_ms,
            claim_key=claim_key,
            coalesce=coalesce,
        )
        try:
            raw = self._admit(keys=keys, args=args)
        except redis.RedisError as exc:
            raise StoreError(f"admitting a cancel failed: {exc}") from exc
        return parse_admission(raw)

    def admit_call(
        self,
        *,
        account: str,
        category: str,
        budget: Budget,
        request_id: str,
        item_json: str,
        delay_ms: int,
        claim_key: str,
        coalesce: bool = False,
    ) -> tuple[list[str], list[str | int]]:
        """KEYS and ARGV of ``admit.lua`` (also composed into the intake script)."""
        name = lane_name(account, category)
        lane = self._keys.lane(name)
        keys = [
            f"{lane}:log",
            lane,
            f"{lane}:pause",
            self._keys.lanes_ready(),
            self._keys.parked_item(request_id),
            f"{lane}:cfg",
            claim_key,
            self._keys.halts(),
        ]
        args: list[str | int] = [
            budget.limit,
            budget.window_ms,
            request_id,
            item_json,
            name,
            max(delay_ms, 0),
            budget.batch,
            int(budget.per_item),
            self._park_ttl_ms,
            self._lease_ms,
            COALESCE_BUSY_MS if coalesce else 0,
            account,
            self._keys.lanes_wake(),
        ]
        return keys, args

    def dispatch(self, queue: str, max_lanes: int = 64) -> DispatchResult:
        keys = [self._keys.lanes_ready(), queue, self._keys.halts()]
        args: list[str | int] = [
            self._keys.prefix,
            max_lanes,
            SUBMIT_TASK,
            queue,
            f"d{uuid.uuid4().hex[:12]}",
            self._park_ttl_ms,
            HALT_RELOOK_MS,
        ]
        try:
            dispatched, next_ms, lanes = self._dispatch(keys=keys, args=args)
        except redis.RedisError as exc:
            raise StoreError(f"dispatching parked cancels failed: {exc}") from exc
        return DispatchResult(int(dispatched), int(next_ms), int(lanes))

    @property
    def scripts(self) -> list[Script]:
        """The scripts a pipeline may queue through :meth:`queue_restamp`."""
        return [self._restamp]

    def queue_restamp(
        self,
        pipe: redis.client.Pipeline,
        lane: str,
        units: Sequence[str],
        window_ms: int,
        signals: SignalCounts | None = None,
    ) -> None:
        """Queue, on ``pipe``: the request that spent ``units`` of ``lane``
        (``account:category``, a ``window_ms`` window) got its reply now; they count from now,
        and ``signals`` are counted in the same call (``restamp.lua``)."""
        increments = signals.increments if signals is not None else {}
        args: list[str | int] = [window_ms, signals.ttl_s if signals else 0, len(increments)]
        for field, n in increments.items():
            args += [field, n]
        # without signals, KEYS[2] is a name in the prefix the script never writes
        keys = [f"{self._keys.lane(lane)}:log", signals.key if signals else self._keys.no_claim()]
        queue_script(pipe, self._restamp, keys, [*args, *units])

    def pause(self, account: str, category: str, duration_ms: int, reason: str = "") -> None:
        """The exchange said stop (10006/429): nothing leaves this lane for ``duration_ms``;
        ``reason`` (the code it said) is kept beside the pause for operators."""
        name = lane_name(account, category)
        lane = self._keys.lane(name)
        keys = [f"{lane}:pause", self._keys.lane_pause_reason(name)]
        try:
            self._pause(keys=keys, args=[max(duration_ms, 1), reason or "rate_limit"])
        except redis.RedisError as exc:
            raise StoreError(f"pausing a lane failed: {exc}") from exc

    def observe_limit(self, account: str, category: str, limit: int) -> None:
        """The exchange's own limit for the key (``X-Bapi-Limit``); the lower one is obeyed."""
        lane = self._keys.lane(lane_name(account, category))
        try:
            self._redis.hset(f"{lane}:cfg", "exchange_limit", max(limit, 1))
        except redis.RedisError as exc:
            raise StoreError(f"recording the exchange's limit failed: {exc}") from exc

    def acquire(self, name: str, limit: int, window_ms: int) -> int:
        """Take one unit of the budget ``name`` now: 0, or the ms until one frees."""
        log_key = f"{self._keys.lane(name)}:log"
        try:
            taken, wait_ms = self._acquire(
                keys=[log_key], args=[limit, window_ms, uuid.uuid4().hex[:12]]
            )
        except redis.RedisError as exc:
            raise StoreError(f"taking a budget unit failed: {exc}") from exc
        return 0 if taken else max(int(wait_ms), 1)

    def take_parked(self, account: str, category: str) -> list[tuple[str, str]]:
        """Every cancel parked in a lane, as (request id, item JSON), without removing them."""
        lane = self._keys.lane(lane_name(account, category))
        try:
            ids = [as_text(i) for i in self._redis.zrange(lane, 0, -1)]
            items = self._redis.mget([self._keys.parked_item(i) for i in ids]) if ids else []
        except redis.RedisError as exc:
            raise StoreError(f"reading parked cancels failed: {exc}") from exc
        return [(i, as_text(raw)) for i, raw in zip(ids, items, strict=True) if raw]

    def unpark(self, account: str, category: str, request_ids: list[str]) -> list[str]:
        """Remove parked cancels; returns those this call removed (a dispatcher may win)."""
        lane = self._keys.lane(lane_name(account, category))
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for request_id in request_ids:
                    pipe.zrem(lane, request_id)
                removed = pipe.execute()
                for request_id, gone in zip(request_ids, removed, strict=True):
                    if gone:
                        pipe.delete(self._keys.parked_item(request_id))
                pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"removing parked cancels failed: {exc}") from exc
        return [r for r, gone in zip(request_ids, removed, strict=True) if gone]

    def parked(self) -> int:
        """How many cancels wait in lanes right now (for the queue-depth gauge)."""
        try:
            names = self._redis.zrange(self._keys.lanes_ready(), 0, -1)
            with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.zcard(self._keys.lane(as_text(name)))
                return int(sum(pipe.execute()))
        except redis.RedisError as exc:
            raise StoreError(f"counting parked cancels failed: {exc}") from exc
