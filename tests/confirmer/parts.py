"""The confirmer's parts wired to a real Redis without processes, and the worker's real way of
recording an accepted cancel (``ClaimStore.finish`` with its expectation, ``finish.lua``)."""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from prometheus_client import CollectorRegistry

from cancelq.confirmations import ConfirmationRecord, Expectation
from cancelq.confirmer.config import load_confirmer_config
from cancelq.confirmer.fallback import Check
from cancelq.confirmer.metrics import ConfirmerMetrics
from cancelq.confirmer.resolver import Resolver, StreamSink
from cancelq.confirmer.store import ConfirmationStore
from cancelq.confirmer.sweeper import Ownership, Sweeper
from cancelq.keys import Keys
from cancelq.outcomes import Outcome, Status
from cancelq.worker.claims import ClaimStore

KEYS = Keys()


class Parts:
    def __init__(self, client: redis.Redis, *, owned: bool = True, up: bool = True) -> None:
        self.metrics = ConfirmerMetrics(CollectorRegistry())
        self.store = ConfirmationStore(client, KEYS, confirmation_ttl_s=60, final_ttl_s=60)
        self.resolver = Resolver(self.store, self.metrics)
        self.sink = StreamSink(self.resolver, self.metrics)
        self.checks: list[Check] = []
        config = load_confirmer_config(grace_s=1.0)
        self.sweeper = Sweeper(
            self.resolver,
            Ownership(lambda: {"main"} if owned else set(), lambda _: up, {"main"}),
            lambda c: self.checks.append(c) is None,
            config,
            self.metrics,
        )


def claims(client: redis.Redis) -> ClaimStore:
    return ClaimStore(client, KEYS, lease_s=60, dedup_ttl_s=60, outcome_ttl_s=60)


def accepted_outcome(rid: str, order_id: str) -> Outcome:
    return Outcome(
        requestId=rid,
        status=Status.CANCELLED,
        account="main",
        category="spot",
        symbol="BTCUSDT",
        orderId=order_id,
        answeredAt=int(time.time() * 1000),
    )


def expectation(order_id: str, *, deadline_ms: int) -> Expectation:
    return Expectation(account="main", order_id=order_id, deadline_ms=deadline_ms, ttl_s=60)


def accepted(client: redis.Redis, rid: str, order_id: str, *, deadline_ms: int) -> bool:
    """Record an accepted cancel as the worker does; True when the outcome was new."""
    outcome = accepted_outcome(rid, order_id)
    return claims(client).finish(
        outcome,
        account=None,
        identity=None,
        keep=True,
        expectation=expectation(order_id, deadline_ms=deadline_ms),
    )


def push(status: str, order_id: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"orderId": order_id, "orderStatus": status, "cumExecQty": "0", **extra}]


def record(client: redis.Redis, rid: str) -> ConfirmationRecord | None:
    raw = client.get(KEYS.confirmation(rid))
    return None if raw is None else ConfirmationRecord.model_validate(json.loads(raw))


def in_the_future_ms(seconds: float = 60) -> int:
    return int((time.time() + seconds) * 1000)
