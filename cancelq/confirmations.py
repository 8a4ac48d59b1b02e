"""Confirmations: did an accepted cancel really cancel the order, or did it fill first?

Bybit's reply to a cancel means *accepted*. When the worker records a ``cancelled`` outcome it
also registers an :class:`Expectation`: the request id joins the pending set with a
deadline, and is indexed under its (account, orderId) so the confirmer, following the private
order stream (or polling ``/v5/order/realtime``), can resolve it. The confirmer writes one
:class:`ConfirmationRecord` per request, readable like an outcome (:class:`ConfirmationReader`).

The confirmer's own keys (account leases, the short memory of orders' final states, the fallback
rate bucket) are built by :class:`~cancelq.keys.Keys` too, under the same prefix.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import redis
from pydantic import BaseModel, ConfigDict, ValidationError

from cancelq.errors import StoreError
from cancelq.keys import Keys


class Confirmation(StrEnum):
    CONFIRMED_CANCELLED = "confirmed_cancelled"  # Cancelled, PartiallyFilledCanceled, Deactivated
    FILLED_FIRST = "filled_first"  # Filled (also the second Filled after a cancel/fill race)
    UNCONFIRMED = "unconfirmed"  # no final state seen before the deadline


#: Bybit ``orderStatus`` values that end an order, and what they mean for an accepted cancel.
#: ``Rejected`` cannot follow an accepted cancel on Bybit; if seen, the order is gone unfilled.
FINAL_STATUSES: dict[str, Confirmation] = {
    "Cancelled": Confirmation.CONFIRMED_CANCELLED,
    "PartiallyFilledCanceled": Confirmation.CONFIRMED_CANCELLED,
    "Deactivated": Confirmation.CONFIRMED_CANCELLED,
    "Rejected": Confirmation.CONFIRMED_CANCELLED,
    "Filled": Confirmation.FILLED_FIRST,
}


def result_for(order_status: str) -> Confirmation | None:
    """The confirmation a final ``orderStatus`` gives; None while the order is still open."""
    return FINAL_STATUSES.get(order_status)


class ConfirmationRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    requestId: str
    result: Confirmation
    account: str
    orderId: str
    orderStatus: str | None = None
    via: str | None = None  # "stream", "rest" or "deadline"
    cumExecQty: str | None = None  # filled quantity at the final state (a partial fill shows)
    acceptedAt: int | None = None  # ms, the exchange's accept reply
    confirmedAt: int | None = None  # ms

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @property
    def latency_s(self) -> float | None:
        """Accept-to-confirm latency (seconds), when both times are known."""
        if self.acceptedAt is None or self.confirmedAt is None:
            return None
        return max(0.0, (self.confirmedAt - self.acceptedAt) / 1000)


@dataclass(frozen=True)
class Expectation:
    """That an accepted cancel's order reaches a final state, by ``deadline_ms``.

    The worker registers it in the same script that records the cancel's outcome
    (``worker/finish.lua``): the watch set and the pending entry appear together with the
    outcome, or not at all, and only when the outcome is new and no confirmation exists yet.
    A final state the stream saw before that moment is found by the sweep's first sight
    (``confirmer/store.py``); one seen after it finds the watch set.
    """

    account: str
    order_id: str
    deadline_ms: int
    ttl_s: int

    def script_keys(self, keys: Keys, request_id: str) -> list[str]:
        """KEYS[7..9] of ``finish.lua``: the confirmation, the watch set, the pending set."""
        return [
            keys.confirmation(request_id),
            keys.confirm_watch(self.account, self.order_id),
            keys.confirm_pending(),
        ]

    def script_args(self) -> list[str | int]:
        """ARGV[7..8] of ``finish.lua``."""
        return [self.deadline_ms, self.ttl_s]


class ConfirmationReader:
    """Reads confirmations for producers, the CLI and the demo."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    def get(self, request_id: str) -> ConfirmationRecord | None:
        return self.get_many([request_id]).get(request_id)

    def get_many(self, request_ids: Sequence[str]) -> dict[str, ConfirmationRecord]:
        ids = list(request_ids)
        if not ids:
            return {}
        try:
            raw = self._redis.mget([self._keys.confirmation(rid) for rid in ids])
        except redis.RedisError as exc:
            raise StoreError(f"reading confirmations failed: {exc}") from exc
        found: dict[str, ConfirmationRecord] = {}
        for rid, value in zip(ids, raw, strict=True):
            record = parse_confirmation(value) if value else None
            if record is not None:
                found[rid] = record
        return found


def parse_confirmation(raw: str | bytes) -> ConfirmationRecord | None:
    try:
        return ConfirmationRecord.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return None


@dataclass(frozen=True)
class ConfirmationSummary:
    """What the demo shows: confirmations by result and accept-to-confirm latency (seconds)."""

    expected: int
    by_result: dict[str, int] = field(default_factory=dict)
    by_via: dict[str, int] = field(default_factory=dict)
    latency_p50_s: float | None = None
    latency_p99_s: float | None = None
    latency_max_s: float | None = None

    @property
    def missing(self) -> int:
        return self.expected - sum(self.by_result.values())


def summarize(records: Sequence[ConfirmationRecord], expected: int) -> ConfirmationSummary:
    by_result: dict[str, int] = {}
    by_via: dict[str, int] = {}
    latencies: list[float] = []
    for record in records:
        by_result[record.result.value] = by_result.get(record.result.value, 0) + 1
        via = record.via or "unknown"
        by_via[via] = by_via.get(via, 0) + 1
        if record.result is not Confirmation.UNCONFIRMED and record.latency_s is not None:
            latencies.append(record.latency_s)
    latencies.sort()
    return ConfirmationSummary(
        expected=expected,
        by_result=by_result,
        by_via=by_via,
        latency_p50_s=_quantile(latencies, 0.5),
        latency_p99_s=_quantile(latencies, 0.99),
        latency_max_s=latencies[-1] if latencies else None,
    )


def read_summary(
    client: redis.Redis, keys: Keys, request_ids: Sequence[str]
) -> ConfirmationSummary:
    """Summary of the confirmations of ``request_ids`` (those without one count as missing)."""
    records = ConfirmationReader(client, keys).get_many(request_ids)
    return summarize(list(records.values()), expected=len(request_ids))


def _quantile(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


def now_ms() -> int:
    return int(time.time() * 1000)
