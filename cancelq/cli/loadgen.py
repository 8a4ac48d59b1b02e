"""``cancelq loadgen``: a steady stream of cancels against the bundled simulator.

For the compose stack and its dashboards: each tick places orders on the simulator (its admin
API; ``SIMULATOR_ADMIN_TOKEN`` when it is not on loopback) round-robin over the accounts file,
then enqueues a cancel for each through the producer API. It runs until SIGTERM/SIGINT (or
``duration_s``) and prints its totals every ``report_s``. Never point it at a real exchange:
the admin API exists only on the simulator.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cancelq.accounts import load_accounts
from cancelq.errors import ConfigError
from cancelq.producers.client import CancelProducer
from cancelq.settings import Settings
from cancelq.simulator.admin_client import AdminClient, AdminClientError
from cancelq.simulator.cli import ADMIN_ENV_VAR

TICK_S = 0.1


@dataclass(frozen=True)
class LoadPlan:
    rate_per_s: float
    category: str = "spot"
    symbol: str = "BTCUSDT"
    duration_s: float | None = None
    report_s: float = 10.0

    def per_tick(self, tick: int) -> int:
        """Orders to place on ``tick`` so that the running total follows the rate exactly."""
        return int((tick + 1) * self.rate_per_s * TICK_S) - int(tick * self.rate_per_s * TICK_S)


def run_loadgen(settings: Settings, plan: LoadPlan, echo: Callable[[str], None] = print) -> int:
    """Place and cancel at ``plan.rate_per_s`` until stopped; returns the cancels enqueued."""
    if plan.rate_per_s <= 0:
        raise ConfigError("loadgen: --rate must be above 0")
    if settings.redis_url is None or settings.accounts_file is None:
        raise ConfigError("loadgen: CANCELQ_REDIS_URL and CANCELQ_ACCOUNTS_FILE must be set")
    aliases = itertools.cycle(sorted(load_accounts(settings.accounts_file)))
    producer = CancelProducer.from_url(
        settings.redis_url,
        queue=settings.queue,
        key_prefix=settings.key_prefix,
        sentinel=settings.redis_sentinel(),
    )
    admin = AdminClient(settings.bybit_base_url, token=os.environ.get(ADMIN_ENV_VAR))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    started = time.monotonic()
    enqueued = 0
    next_report = started + plan.report_s
    try:
        for tick in itertools.count():
            due = started + tick * TICK_S
            if stop.wait(max(due - time.monotonic(), 0)):
                break
            if plan.duration_s is not None and due - started >= plan.duration_s:
                break
            enqueued += _one_tick(admin, producer, next(aliases), plan, plan.per_tick(tick))
            if time.monotonic() >= next_report:
                echo(f"loadgen: {enqueued} cancels enqueued in {time.monotonic() - started:.0f}s")
                next_report += plan.report_s
    finally:
        admin.close()
    echo(f"loadgen: done, {enqueued} cancels enqueued")
    return enqueued


def _one_tick(
    admin: AdminClient, producer: CancelProducer, account: str, plan: LoadPlan, count: int
) -> int:
    if count == 0:
        return 0
    stamp = time.time_ns()
    items = [{"orderLinkId": f"load-{stamp}-{i}", "price": "100", "qty": "1"} for i in range(count)]
    try:
        rows = admin.place_orders(
            items, account=account, category=plan.category, symbol=plan.symbol
        )
    except (AdminClientError, OSError) as exc:
        raise ConfigError(f"loadgen: the simulator refused the orders: {exc}") from exc
    placed = [row["orderId"] for row in rows if "orderId" in row]
    producer.enqueue_many(
        {"account": account, "category": plan.category, "symbol": plan.symbol, "orderId": oid}
        for oid in placed
    )
    return len(placed)
