"""``cancelq demo``: the whole product on one machine, ending with a summary.

Starts an embedded Redis (unless ``CANCELQ_REDIS_URL`` is set), the Bybit simulator with three
accounts (two HMAC keys, one RSA key), places orders there, starts worker processes, enqueues
cancels (by orderId, by orderLinkId, duplicates, unknown orders, orders already filled, invalid
messages), waits for every outcome and prints what happened. Exit code 1 when any request has
no final outcome. Everything it started is stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import math
import random
import secrets
import signal
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from cancelq.confirmations import ConfirmationSummary, read_summary
from cancelq.harness.accounts import AccountSpec, new_rsa_pair, random_account
from cancelq.harness.stack import Stack
from cancelq.keys import Keys
from cancelq.outcomes import Outcome
from cancelq.producers.client import CancelProducer
from cancelq.producers.message import encode_message
from cancelq.settings import Settings

console = Console(stderr=True)
#: (alias, category, symbol, credential kind)
ACCOUNTS = (
    ("alpha", "spot", "BTCUSDT", "hmac"),
    ("beta", "linear", "ETHUSDT", "hmac"),
    ("gamma", "spot", "SOLUSDT", "rsa"),
)
#: What the demo's services run with (they log to files in a temporary directory).
SERVICE_ENV = {"CANCELQ_LOG_LEVEL": "WARNING"}
WAIT_S = 180.0
CONFIRM_WAIT_S = 40.0


@dataclass(frozen=True)
class Plan:
    """What the demo enqueues: valid cancels (some duplicates) and raw invalid messages."""

    cancels: list[dict[str, Any]]
    invalid: list[dict[str, Any]]
    filled: int
    unknown: int
    duplicates: int


def run_demo(settings: Settings, *, orders: int = 300, workers: int = 2, seed: int = 1) -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # a supervisor's stop is a Ctrl-C
    try:
        return _run(settings, orders=orders, workers=workers, seed=seed)
    except KeyboardInterrupt:  # everything started was stopped on the way out
        console.print("interrupted: stopped the workers, the confirmer, the simulator and Redis")
        return 130


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _run(settings: Settings, *, orders: int, workers: int, seed: int) -> int:
    rng = random.Random(seed)
    with (
        tempfile.TemporaryDirectory(prefix="cancelq-demo-") as tmp,
        Stack(
            Path(tmp),
            _accounts(),
            redis_url=settings.redis_url,
            sentinel=settings.redis_sentinel(),
            env=SERVICE_ENV,
        ) as stack,
    ):
        if stack.embedded:
            console.print(f"embedded Redis on {stack.redis_url}")
        console.print(f"Bybit V5 simulator on {stack.sim.base_url}")
        plan = _place_orders(stack.sim, orders, rng)
        stack.start_together([stack.worker() for _ in range(workers)])
        console.print(f"{workers} worker processes ready")
        stack.start_confirmer()
        console.print("confirmer following the private order streams")
        producer = stack.producer
        started = time.monotonic()
        ids = _enqueue(producer, stack.redis, plan)
        outcomes = _wait(producer, ids)
        elapsed = time.monotonic() - started
        accepted = [
            rid
            for rid, o in outcomes.items()
            if o.status.value == "cancelled" and o.duplicateOf is None
        ]
        confirmations = _wait_confirmations(stack.redis, accepted)
        _summary(
            plan,
            ids=ids,
            outcomes=outcomes,
            records=stack.sim.admin.records(),
            confirmations=confirmations,
            elapsed=elapsed,
            metrics_urls=[f"http://127.0.0.1:{w.metrics_port}/metrics" for w in stack.workers],
        )
        return 0 if len(outcomes) == len(ids) else 1


def _accounts() -> list[AccountSpec]:
    """Fresh random credentials for this run; the RSA key pair is made here too."""
    pair = new_rsa_pair()
    return [
        random_account(
            alias,
            uid,
            rsa=pair if kind == "rsa" else None,
            rate_limit_per_s=20 if category == "spot" else 10,
        )
        for uid, (alias, category, _, kind) in enumerate(ACCOUNTS, start=5001)
    ]


def _place_orders(sim: Any, orders: int, rng: random.Random) -> Plan:
    """Place ``orders`` orders spread over the accounts; plan a cancel for each, and more."""
    cancels: list[dict[str, Any]] = []
    filled = 0
    per_account = max(orders // len(ACCOUNTS), 1)
    for alias, category, symbol, _ in ACCOUNTS:
        items = [
            {"orderLinkId": f"{alias}-{i:05d}", "price": "100", "qty": "1"}
            for i in range(per_account)
        ]
        placed = sim.admin.place_orders(items, account=alias, category=category, symbol=symbol)
        for item, row in zip(items, placed, strict=True):
            base = {"account": alias, "category": category, "symbol": symbol}
            if rng.random() < 0.5:
                cancels.append({**base, "orderId": row["orderId"]})
            else:
                cancels.append({**base, "orderLinkId": item["orderLinkId"]})
            if rng.random() < 0.03:
                sim.admin.fill(row["orderId"])
                filled += 1
    duplicates = [dict(c) for c in rng.sample(cancels, k=max(len(cancels) // 20, 1))]
    unknown = [
        {"account": alias, "category": category, "symbol": symbol, "orderLinkId": f"ghost-{i}"}
        for i, (alias, category, symbol, _) in enumerate(ACCOUNTS * 3)
    ]
    invalid = [
        {"account": "alpha", "category": "spot", "symbol": "BTCUSDT"},  # no id at all
        {"account": "alpha", "category": "futures", "symbol": "BTCUSDT", "orderId": "1"},
        {"account": "nobody", "category": "spot", "symbol": "BTCUSDT", "orderId": "1"},
        {"account": "alpha", "category": "spot", "symbol": "BTCUSDT", "orderLinkId": "x" * 40},
    ]
    everything = cancels + duplicates + unknown
    rng.shuffle(everything)
    return Plan(everything, invalid, filled, len(unknown), len(duplicates))


def _wait_confirmations(client: redis.Redis, request_ids: Sequence[str]) -> ConfirmationSummary:
    deadline = time.monotonic() + CONFIRM_WAIT_S
    summary = read_summary(client, Keys(), request_ids)
    with console.status("waiting for confirmations") as status:
        while summary.missing and time.monotonic() < deadline:
            status.update(
                f"waiting for confirmations: {summary.expected - summary.missing}"
                f"/{summary.expected}"
            )
            time.sleep(0.1)
            summary = read_summary(client, Keys(), request_ids)
    return summary


def _enqueue(producer: CancelProducer, raw: redis.Redis, plan: Plan) -> list[str]:
    ids = producer.enqueue_many(plan.cancels)
    pushed = []
    for n, fields in enumerate(plan.invalid):
        request_id = f"invalid-{n}-{secrets.token_hex(4)}"
        # what a buggy non-Python producer could push: the worker must reject it cleanly
        raw.lpush("cancelq", encode_message({**fields, "requestId": request_id}, request_id))
        pushed.append(request_id)
    console.print(f"enqueued {len(ids)} cancels and {len(pushed)} invalid messages")
    return ids + pushed


def _wait(producer: CancelProducer, ids: Sequence[str]) -> dict[str, Outcome]:
    done: dict[str, Outcome] = {}
    deadline = time.monotonic() + WAIT_S
    with console.status("waiting for outcomes") as status:
        while len(done) < len(ids) and time.monotonic() < deadline:
            done.update(producer.outcomes([i for i in ids if i not in done]))
            status.update(f"waiting for outcomes: {len(done)}/{len(ids)}")
            time.sleep(0.1)
    return done


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def _summary(
    plan: Plan,
    *,
    ids: Sequence[str],
    outcomes: dict[str, Outcome],
    records: list[dict[str, Any]],
    confirmations: ConfirmationSummary,
    elapsed: float,
    metrics_urls: Sequence[str],
) -> None:
    out = Console()
    by_status = Counter(o.status.value for o in outcomes.values())
    out.print(
        _table(
            f"cancelq demo: {len(ids)} requests in {elapsed:.1f}s",
            ("final outcome", "requests"),
            [*by_status.most_common(), ("no outcome", len(ids) - len(outcomes))],
        )
    )
    codes = Counter(
        str(o.retCode) for o in outcomes.values() if o.retCode is not None and not o.duplicateOf
    )
    out.print(
        _table(
            "Bybit retCode of each cancel's final reply",
            ("retCode", "cancels"),
            codes.most_common(),
        )
    )
    endpoints = Counter(str(r.get("endpoint")) for r in records)
    out.print(
        _table(
            "requests the exchange (simulator) received",
            ("endpoint", "requests"),
            endpoints.most_common(),
        )
    )
    out.print(
        _table(
            f"confirmations of {confirmations.expected} accepted cancels (private order stream)",
            ("result", "cancels"),
            [
                *sorted(confirmations.by_result.items()),
                ("not confirmed yet", confirmations.missing),
            ],
        )
    )
    latencies = [
        (o.answeredAt - o.enqueuedAt) / 1000
        for o in outcomes.values()
        if o.answeredAt and o.enqueuedAt and o.duplicateOf is None
    ]
    out.print(
        f"planned: {plan.duplicates} duplicates, {plan.unknown} unknown orders, "
        f"{plan.filled} filled before their cancel, {len(plan.invalid)} invalid messages"
    )
    out.print(
        f"latency enqueue -> exchange reply: p50 {_ms(_percentile(latencies, 0.5))}, "
        f"p99 {_ms(_percentile(latencies, 0.99))} over {len(latencies)} sent cancels "
        "(each key drains at its rate limit, so most of this is waiting for budget)"
    )
    out.print(
        f"accept -> confirmed: p50 {_ms(confirmations.latency_p50_s)}, "
        f"p99 {_ms(confirmations.latency_p99_s)} (via {dict(confirmations.by_via)})"
    )
    out.print("worker metrics (while the demo runs): " + ", ".join(metrics_urls))
    if len(outcomes) < len(ids):
        out.print(f"[red]{len(ids) - len(outcomes)} requests have no final outcome[/]")


def _table(title: str, columns: tuple[str, str], rows: Sequence[tuple[str, int]]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(columns[0])
    table.add_column(columns[1], justify="right")
    for name, count in rows:
        table.add_row(name, str(count))
    return table


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.1f} ms"
