"""A demo-like load on a real local stack, to prove the monitoring with real metrics.

:func:`demo_stack` starts what ``cancelq demo`` starts (a private Redis, the Bybit simulator,
worker processes, one confirmer: the harness's stack), with fast heartbeats so queue depth is
sampled every second.
:func:`drive_load` then sends a few hundred cancels in phases that together make every metric
the dashboard and the alert rules read carry data:

1. mixed: by orderId and by orderLinkId, duplicates, unknown orders, filled orders, invalid
   cancels, two items that are not cancels at all (dead letters); more cancels per key than its
   rate budget, so lanes park and cancel-batch requests go out;
2. exchange faults: retCode 10016 and HTTP 5xx answers for a moment (retries);
3. a silent private stream: confirmations fall back to REST, then the stream is dropped and
   reconnects;
4. a burst over a key's limit and a kill switch while it is parked (``covered_by_kill``).

Everything is bounded by deadlines; everything started is stopped on exit. Used by
``tests/monitoring/test_monitoring_demo_load.py`` and ``python -m monitoring.snapshot``.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import redis

from cancelq.harness.accounts import AccountSpec, new_rsa_pair, random_account
from cancelq.harness.processes import ConfirmerProcess, WorkerProcess
from cancelq.harness.stack import Stack
from cancelq.outcomes import Outcome
from cancelq.producers.client import CancelProducer
from cancelq.producers.message import encode_message
from cancelq.simulator.testing import SimulatorProcess

WORKER_JOB = "cancelq-worker"
CONFIRMER_JOB = "cancelq-confirmer"
#: Labels the Prometheus Operator puts on every target in the cluster; the KEDA trigger's query
#: selects on them, so the local scrape adds them too.
TARGET_LABELS = {"namespace": "cancelq"}
OUTCOME_WAIT_S = 60.0


@dataclass(frozen=True)
class Account:
    alias: str
    category: str
    symbol: str
    rsa: bool
    rate_limit_per_s: int


ACCOUNTS = (
    Account("alpha", "spot", "BTCUSDT", rsa=False, rate_limit_per_s=20),
    Account("beta", "linear", "ETHUSDT", rsa=False, rate_limit_per_s=10),
    Account("gamma", "spot", "SOLUSDT", rsa=True, rate_limit_per_s=10),
)
BURST_ACCOUNT = ACCOUNTS[1]  # the kill switch phase: 10/s, batches of up to 20


@dataclass
class DemoStack:
    redis_url: str
    sim: SimulatorProcess
    workers: list[WorkerProcess]
    confirmer: ConfirmerProcess
    worker_targets: list[str]  # host:port of each worker's /metrics
    confirmer_target: str

    @cached_property
    def producer(self) -> CancelProducer:
        return CancelProducer.from_url(self.redis_url)


@dataclass
class LoadReport:
    """What the load sent and what came back (from the outcomes, not from metrics)."""

    requests: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    ret_codes: Counter[str] = field(default_factory=Counter)
    dead_letters_pushed: int = 0
    kill_status: str = ""
    phases_s: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.requests} requests; outcomes {dict(self.outcomes.most_common())}; "
            f"retCodes {dict(self.ret_codes.most_common())}; "
            f"{self.dead_letters_pushed} dead letters pushed; kill {self.kill_status}; "
            f"phases (s) { {k: round(v, 1) for k, v in self.phases_s.items()} }"
        )


# --- the stack ----------------------------------------------------------------------------------


def demo_accounts() -> list[AccountSpec]:
    """Fresh random credentials (HMAC and one RSA key) for the simulator and the workers."""
    pair = new_rsa_pair()
    return [
        random_account(
            account.alias,
            uid,
            rsa=pair if account.rsa else None,
            rate_limit_per_s=account.rate_limit_per_s,
        )
        for uid, account in enumerate(ACCOUNTS, start=7001)
    ]


@contextmanager
def demo_stack(workdir: Path, *, workers: int = 2) -> Iterator[DemoStack]:
    """Redis, simulator, ``workers`` worker processes and a confirmer, all on 127.0.0.1."""
    with Stack(
        workdir,
        demo_accounts(),
        env={
            "CANCELQ_HEARTBEAT_S": "1",  # queue depth sampled every second
            "CANCELQ_LOG_FORMAT": "json",
            "CANCELQ_LOG_LEVEL": "WARNING",
        },
        worker_env={"CANCELQ_NOT_FOUND_RECHECK_S": "0.6", "CANCELQ_NOT_FOUND_RETRY_S": "0.2"},
        confirmer_env={
            "CANCELQ_CONFIRMER_GRACE_S": "0.5",  # REST fallback soon after silence
            "CANCELQ_CONFIRMER_LEASE_CHECK_S": "0.5",
        },
    ) as stack:
        started = [stack.worker() for _ in range(workers)]
        confirmer = stack.confirmer()
        stack.start_together([*started, confirmer])
        yield DemoStack(
            redis_url=stack.redis_url,
            sim=stack.sim,
            workers=started,
            confirmer=confirmer,
            worker_targets=[f"127.0.0.1:{w.metrics_port}" for w in started],
            confirmer_target=f"127.0.0.1:{confirmer.metrics_port}",
        )


# --- the load -----------------------------------------------------------------------------------


def drive_load(
    stack: DemoStack,
    *,
    seed: int = 1,
    per_account: int = 60,
    burst: int = 120,
    wait_for: Callable[[str], None] | None = None,
) -> LoadReport:
    """Run the four phases; return what the outcomes say. ``wait_for(what)`` is called where a
    phase needs the confirmer to have reacted (``"fallbacks"``, ``"reconnects"``); the default
    polls the confirmer's own /metrics."""
    rng = random.Random(seed)
    report = LoadReport()
    waiter = wait_for or (lambda what: _wait_confirmer_metric(stack, what))
    phases: list[tuple[str, Callable[[], list[str]]]] = [
        ("mixed", lambda: _mixed(stack, rng, per_account, report)),
        ("exchange faults", lambda: _exchange_faults(stack, rng)),
        ("silent stream", lambda: _silent_stream(stack, rng, waiter)),
        ("burst and kill", lambda: _burst_and_kill(stack, burst, report)),
    ]
    for name, phase in phases:
        started = time.monotonic()
        ids = phase()
        outcomes = stack.producer.wait_many(ids, OUTCOME_WAIT_S)
        _count(report, ids, outcomes)
        report.phases_s[name] = time.monotonic() - started
    return report


def _count(report: LoadReport, ids: Sequence[str], outcomes: dict[str, Outcome]) -> None:
    report.requests += len(ids)
    for outcome in outcomes.values():
        report.outcomes[outcome.status.value] += 1
        if outcome.retCode is not None and outcome.duplicateOf is None:
            report.ret_codes[str(outcome.retCode)] += 1


def _place(stack: DemoStack, account: Account, count: int, tag: str) -> list[tuple[str, str]]:
    """``count`` open orders: (orderId, orderLinkId) each."""
    items = [{"orderLinkId": f"{tag}-{i:04d}", "price": "100", "qty": "1"} for i in range(count)]
    rows = stack.sim.admin.place_orders(
        items, account=account.alias, category=account.category, symbol=account.symbol
    )
    return [
        (str(row["orderId"]), item["orderLinkId"]) for item, row in zip(items, rows, strict=True)
    ]


def _cancel(account: Account, *, order_id: str = "", link_id: str = "") -> dict[str, Any]:
    fields: dict[str, Any] = {
        "account": account.alias,
        "category": account.category,
        "symbol": account.symbol,
    }
    if order_id:
        fields["orderId"] = order_id
    else:
        fields["orderLinkId"] = link_id
    return fields


def _mixed(stack: DemoStack, rng: random.Random, per_account: int, report: LoadReport) -> list[str]:
    cancels: list[dict[str, Any]] = []
    for account in ACCOUNTS:
        for order_id, link_id in _place(stack, account, per_account, f"{account.alias}-m"):
            if rng.random() < 0.05:
                stack.sim.admin.fill(order_id)  # filled before its cancel: too_late
            by_id = rng.random() < 0.5
            cancels.append(_cancel(account, order_id=order_id if by_id else "", link_id=link_id))
        cancels += [_cancel(account, link_id=f"ghost-{account.alias}-{i}") for i in range(3)]
    cancels += [dict(c) for c in rng.sample(cancels, k=len(cancels) // 20)]  # duplicates
    rng.shuffle(cancels)
    ids = stack.producer.enqueue_many(cancels)
    raw = redis.Redis.from_url(stack.redis_url)
    try:
        ids += _push_invalid(raw)
        report.dead_letters_pushed = _push_dead_letters(raw)
    finally:
        raw.close()
    return ids


def _push_invalid(raw: redis.Redis) -> list[str]:
    """Cancels a buggy producer could push (they pass no producer-side validation): rejected."""
    invalid = [
        {"account": "alpha", "category": "spot", "symbol": "BTCUSDT"},  # no id
        {"account": "alpha", "category": "futures", "symbol": "BTCUSDT", "orderId": "1"},
        {"account": "nobody", "category": "spot", "symbol": "BTCUSDT", "orderId": "1"},
    ]
    ids = []
    for n, fields in enumerate(invalid):
        request_id = f"invalid-{n}-{secrets.token_hex(4)}"
        raw.lpush("cancelq", encode_message({**fields, "requestId": request_id}, request_id))
        ids.append(request_id)
    return ids


def _push_dead_letters(raw: redis.Redis) -> int:
    """Items that are not cancels at all: not JSON, JSON but not a message envelope."""
    items = [b"this is not a message", json.dumps({"hello": "world"}).encode()]
    for item in items:
        raw.lpush("cancelq", item)
    return len(items)


def _exchange_faults(stack: DemoStack, rng: random.Random) -> list[str]:
    """retCode 10016 and HTTP 5xx on cancels for a moment; the workers retry them."""
    account = ACCOUNTS[0]
    placed = _place(stack, account, 40, "alpha-f")
    stack.sim.admin.set_faults(
        p_10016=0.25,
        p_http_5xx=0.15,
        endpoints=["order/cancel", "order/cancel-batch"],
        seed=rng.randrange(1 << 30),
    )
    try:
        ids = stack.producer.enqueue_many(
            _cancel(account, order_id=order_id) for order_id, _ in placed
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _faults_answered(stack):
            time.sleep(0.1)
    finally:
        stack.sim.admin.clear_faults()
    return ids


def _faults_answered(stack: DemoStack) -> bool:
    """Both faults have been answered at least once (single or batch cancels)."""
    faults = {str(r.get("fault")) for r in stack.sim.admin.records() if r.get("fault")}
    return {"ret_10016", "http_5xx"} <= faults


def _silent_stream(
    stack: DemoStack, rng: random.Random, wait_for: Callable[[str], None]
) -> list[str]:
    """The private stream goes silent (REST fallbacks), then drops (reconnects)."""
    account = ACCOUNTS[2]
    placed = _place(stack, account, 20, "gamma-s")
    stack.sim.admin.set_ws_faults(silent=True)
    try:
        ids = stack.producer.enqueue_many(
            _cancel(account, link_id=link) if rng.random() < 0.5 else _cancel(account, order_id=oid)
            for oid, link in placed
        )
        wait_for("fallbacks")
    finally:
        stack.sim.admin.set_ws_faults(silent=False)
    stack.sim.admin.drop_ws()
    wait_for("reconnects")
    return ids


def _burst_and_kill(stack: DemoStack, burst: int, report: LoadReport) -> list[str]:
    """More cancels than the key's budget (they park in its lane), then its kill switch."""
    account = BURST_ACCOUNT
    placed = _place(stack, account, burst, f"{account.alias}-k")
    producer = stack.producer
    ids = producer.enqueue_many(_cancel(account, order_id=order_id) for order_id, _ in placed)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(producer.outcomes(ids)) < account.rate_limit_per_s:
        time.sleep(0.05)  # the first second's budget has gone out; the rest is parked
    kill_id = producer.kill(account.alias, account.category)
    report.kill_status = producer.wait(kill_id, 20).status.value
    return ids


# --- the confirmer, polled directly -------------------------------------------------------------


_CONFIRMER_SERIES = {
    "fallbacks": "cancelq_confirm_fallbacks_total",
    "reconnects": "cancelq_confirm_stream_reconnects_total",
}


def _wait_confirmer_metric(stack: DemoStack, what: str, timeout_s: float = 20.0) -> None:
    import urllib.request

    name = _CONFIRMER_SERIES[what]
    url = f"http://{stack.confirmer_target}/metrics"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
        if any(
            line.startswith(name) and float(line.rsplit(" ", 1)[1]) > 0
            for line in text.splitlines()
        ):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the confirmer did not report {name} within {timeout_s} s")
