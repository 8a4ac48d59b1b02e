"""The REST fallback: ``GET /v5/order/realtime`` for one order, within the key's budget.

Used when the account's stream is down or a confirmation is late. The query string is signed
exactly as sent (``BybitClient.get``); timestamps come from the exchange's clock
(``ServerClock``). Each account has a token bucket in Redis (``bucket.lua``), shared by every
replica, refilled at ``fallback_per_s`` (default: the account's ``rate_limit_per_s``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import redis

from cancelq.besteffort import safely
from cancelq.bybit.client import REALTIME, BybitClient, Credentials
from cancelq.bybit.clock import ServerClock
from cancelq.confirmations import result_for
from cancelq.confirmer.metrics import ConfirmerMetrics
from cancelq.confirmer.store import FinalState
from cancelq.errors import CancelqError, ExchangeError, StoreError
from cancelq.keys import Keys

log = logging.getLogger(__name__)
_HERE = Path(__file__).parent
TIMESTAMP_ERROR = 10002


@dataclass(frozen=True)
class Budget:
    per_s: float
    capacity: float


class FallbackBudget:
    """Per-account token bucket in Redis: ``take(account)`` is True when a check may be sent."""

    def __init__(self, client: redis.Redis, keys: Keys, budgets: Mapping[str, Budget]) -> None:
        self._keys = keys
        self._budgets = dict(budgets)
        self._script = client.register_script((_HERE / "bucket.lua").read_text())

    def take(self, account: str) -> bool:
        budget = self._budgets.get(account)
        if budget is None:
            return False
        try:
            taken = self._script(
                keys=[self._keys.confirm_bucket(account)], args=[budget.per_s, budget.capacity]
            )
        except redis.RedisError as exc:
            raise StoreError(f"fallback budget of {account}: {exc}") from exc
        return int(taken) == 1


class RestChecker:
    """Asks the exchange for one order's state; None when it is still open or unknown."""

    def __init__(
        self, client: BybitClient, credentials: Mapping[str, Credentials], clock: ServerClock
    ) -> None:
        self._client = client
        self._credentials = dict(credentials)
        self._clock = clock

    def check(self, account: str, category: str, order_id: str) -> FinalState | None:
        creds = self._credentials.get(account)
        if creds is None:
            return None
        if self._clock.is_stale():
            self._clock.sync(self._client.server_time)
        query = {"category": category, "orderId": order_id}
        try:
            reply = self._client.get(REALTIME, query, creds, self._clock.now_ms())
        except ExchangeError as exc:
            log.info("order status of %s/%s not read: %s", account, order_id, exc)
            return None
        if reply.ret_code == TIMESTAMP_ERROR:
            self._clock.invalidate()
        if reply.ret_code != 0:
            log.info(
                "order status of %s/%s: retCode %s %s",
                account,
                order_id,
                reply.ret_code,
                reply.ret_msg[:120],
            )
            return None
        rows = reply.result.get("list")
        row = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else None
        if row is None or str(row.get("orderId", order_id)) != order_id:
            return None
        return FinalState(str(row.get("orderStatus", "")), _opt_str(row.get("cumExecQty")))


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Check:
    """One pending cancel to verify by REST."""

    account: str
    category: str
    order_id: str
    reason: str  # "stream_down" or "late"


class FallbackWorker:
    """A thread sending REST checks, one at a time, so a slow reply never stalls the sweep."""

    def __init__(
        self,
        checker: RestChecker,
        budget: FallbackBudget,
        settle: Callable[[str, str, FinalState, str], int],
        metrics: ConfirmerMetrics,
    ) -> None:
        self._checker = checker
        self._budget = budget
        self._settle = settle
        self._metrics = metrics
        self._queue: queue.Queue[Check | None] = queue.Queue()
        self._queued: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="fallback", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def submit(self, check: Check) -> bool:
        """Queue a check unless the same order is already queued; True when queued."""
        key = (check.account, check.order_id)
        with self._lock:
            if key in self._queued:
                return False
            self._queued.add(key)
        self._queue.put(check)
        return True

    def _run(self) -> None:
        while (check := self._queue.get()) is not None:
            try:
                self.run_one(check)
            except CancelqError:
                log.warning(
                    "fallback check of %s/%s failed", check.account, check.order_id, exc_info=True
                )
            finally:
                with self._lock:
                    self._queued.discard((check.account, check.order_id))

    def run_one(self, check: Check) -> bool:
        """Spend a token and ask; True when the order's final state was found and settled."""
        if not self._budget.take(check.account):
            return False
        safely(self._metrics.fallbacks.labels(check.account, check.reason).inc)
        state = self._checker.check(check.account, check.category, check.order_id)
        if state is None or result_for(state.order_status) is None:
            return False
        self._settle(check.account, check.order_id, state, "rest")
        return True
