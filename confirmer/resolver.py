"""Turning an order's final state into confirmations, and the stream's listener.

:class:`Resolver` builds one :class:`ConfirmationRecord` per waiting request, writes them (first
wins) and counts what it wrote. :class:`StreamSink` receives the stream's ``order`` pushes: a
final state is remembered (for expectations registered later) and resolves every request
already watching that order. A metric or listener failure is logged, never raised into the
stream.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cancelq.besteffort import safely
from cancelq.confirmations import Confirmation, ConfirmationRecord, now_ms, result_for
from cancelq.confirmer.metrics import ConfirmerMetrics
from cancelq.confirmer.store import ConfirmationStore, FinalState
from cancelq.errors import CancelqError
from cancelq.outcomes import Outcome

log = logging.getLogger(__name__)


class Resolver:
    def __init__(
        self,
        store: ConfirmationStore,
        metrics: ConfirmerMetrics,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self._metrics = metrics
        self._clock_ms = clock_ms

    def record(
        self,
        request_id: str,
        outcome: Outcome | None,
        result: Confirmation,
        via: str,
        state: FinalState | None = None,
    ) -> ConfirmationRecord:
        return ConfirmationRecord(
            requestId=request_id,
            result=result,
            account=(outcome.account if outcome else None) or "unknown",
            orderId=(outcome.orderId if outcome else None) or "",
            orderStatus=state.order_status if state else None,
            cumExecQty=state.cum_exec_qty if state else None,
            via=via,
            acceptedAt=outcome.answeredAt if outcome else None,
            confirmedAt=self._clock_ms(),
        )

    def write(self, records: Sequence[ConfirmationRecord]) -> int:
        """Write and count; returns how many were new."""
        written = self.store.write(records)
        for record in written:
            self._observe(record)
        return len(written)

    def settle(self, account: str, order_id: str, state: FinalState, via: str) -> int:
        """A final state is known: remember it and resolve every request watching the order."""
        result = result_for(state.order_status)
        if result is None:
            return 0
        waiting = self.store.remember_final(account, order_id, state)
        if not waiting:
            return 0
        outcomes = self.store.outcomes(waiting)
        return self.write(
            [self.record(rid, outcomes.get(rid), result, via, state) for rid in waiting]
        )

    def _observe(self, record: ConfirmationRecord) -> None:
        m = self._metrics
        safely(m.confirmations.labels(record.account, record.result.value, record.via).inc)
        latency = record.latency_s
        if latency is not None and record.result is not Confirmation.UNCONFIRMED:
            safely(m.latency.labels(record.account, record.result.value).observe, latency)


class StreamSink:
    """The streams' listener: order pushes in, confirmations out; tracks which streams are up."""

    def __init__(self, resolver: Resolver, metrics: ConfirmerMetrics) -> None:
        self._resolver = resolver
        self._metrics = metrics
        self._up: set[str] = set()
        self._lock = threading.Lock()

    def is_up(self, account: str) -> bool:
        return account in self._up

    def on_stream_state(self, account: str, up: bool) -> None:
        with self._lock:
            if up:
                self._up.add(account)
            else:
                self._up.discard(account)
        safely(self._metrics.stream_up.labels(account).set, 1 if up else 0)
        log.info("order stream of %s %s", account, "up" if up else "down")

    def forget(self, account: str) -> None:
        """This replica no longer owns the account."""
        with self._lock:
            self._up.discard(account)
        self._metrics.stream_gone(account)

    def on_orders(self, account: str, orders: list[dict[str, Any]]) -> None:
        for order in orders:
            state = final_state(order)
            order_id = str(order.get("orderId") or "")
            if state is None or not order_id:
                continue
            try:
                self._resolver.settle(account, order_id, state, "stream")
            except CancelqError:
                log.warning(
                    "stream confirmation of %s/%s not recorded (sweep will retry)",
                    account,
                    order_id,
                    exc_info=True,
                )


def final_state(order: Mapping[str, Any]) -> FinalState | None:
    """The final state an ``order`` push reports, or None for an open order."""
    status = str(order.get("orderStatus") or "")
    if result_for(status) is None:
        return None
    cum = order.get("cumExecQty")
    return FinalState(status, None if cum is None else str(cum))
