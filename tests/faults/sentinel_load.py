"""The Sentinel fault tests' load and measures: paced producer threads that retry a failed batch
with the same requestIds (as a real producer would), the cancels planned on three keys, which
acknowledged cancels the (new) master still knows, and when consumption resumed."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cancelq.errors import StoreError
from cancelq.harness.sentinel import SentinelCluster
from cancelq.keys import Keys
from cancelq.producers.client import CancelProducer
from tests.faults.conftest import FAULT_ENV
from tests.faults.harness import (
    ACCOUNTS,
    assert_no_secrets,
    cancels,
    fault_accounts,
    place,
)
from tests.support import Stack, suite_stack

#: The simulator's limits as Bybit's, but no IP limit two cores could reach.
SIM_ARGS = ("--ip-limit", "10000000")


@contextlib.contextmanager
def failover_stack(cluster: SentinelCluster, workdir: Path) -> Iterator[Stack]:
    """The simulator and two workers (the fault tier's env) on ``cluster``'s Sentinel URL;
    no secret anywhere after."""
    with suite_stack(
        workdir,
        fault_accounts(),
        redis_url=cluster.url,
        sentinel=cluster.options,
        sim_args=SIM_ARGS,
        stop_timeout_s=15,
    ) as stack:
        stack.start_together([stack.worker(**FAULT_ENV) for _ in range(2)])
        yield stack
        assert_no_secrets(stack, stack.secrets)


KEYS = ("desk1", "desk2", "desk3")  # 20/s each, at cancelq and at the exchange
BATCH = 10


@dataclass
class Load:
    """Producer threads enqueueing paced batches, retrying a failed batch (same requestIds)."""

    producers: list[CancelProducer]
    batches: list[list[dict[str, str]]]
    span_s: float
    acked_at: dict[str, float] = field(default_factory=dict)  # requestId -> wall clock (s)
    failures: Counter[str] = field(default_factory=Counter)
    #: each acknowledged call's own duration (s), and each batch's first try to its ack (s)
    call_s: list[float] = field(default_factory=list)
    to_ack_s: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._produce, args=(n,), daemon=True)
            for n in range(len(self.producers))
        ]
        for thread in threads:
            thread.start()
        return threads

    def _produce(self, n: int) -> None:
        mine = self.batches[n :: len(self.producers)]
        pace_s = self.span_s / max(len(mine), 1)
        started = time.monotonic()
        for index, batch in enumerate(mine):
            time.sleep(max(started + index * pace_s - time.monotonic(), 0))
            first = time.monotonic()
            while True:
                call = time.monotonic()
                try:
                    ids = self.producers[n].enqueue_many(batch)
                except StoreError as exc:
                    # NotReplicatedError has no cause; a lost connection is redis-py's
                    with self._lock:
                        self.failures[type(exc.__cause__ or exc).__name__] += 1
                    time.sleep(0.05)
                    continue
                now, done = time.time(), time.monotonic()
                with self._lock:
                    self.acked_at.update(dict.fromkeys(ids, now))
                    self.call_s.append(done - call)
                    self.to_ack_s.append(done - first)
                break


def percentile_ms(values: Sequence[float], share: float) -> float:
    """The ``share`` (0..1) percentile of ``values`` (s), in ms (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


def plan(stack: Stack, prefix: str, total: int) -> tuple[list[list[dict[str, str]]], list[str]]:
    """Open orders on the three keys and their cancels (fixed requestIds), in batches."""
    per_key = -(-total // len(KEYS))
    items: list[dict[str, str]] = []
    links: list[str] = []
    for alias in KEYS:
        mine = place(stack, alias, f"{prefix}-{alias}", per_key, category="spot")
        links += mine
        items += [
            {**c, "requestId": f"{prefix}-{c['orderLinkId']}"}
            for c in cancels(alias, mine, category="spot")
        ]
    items = items[:total]
    # interleave the keys, as independent engines would
    items.sort(key=lambda c: int(c["orderLinkId"].rsplit("-", 1)[1]))
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)], links[: len(items)]


def survivors(stack: Stack, ids: Sequence[str]) -> set[str]:
    """Of ``ids``, those the (new) master knows: an outcome, or an outbox entry (the message
    and its outbox entry are one MULTI)."""
    r = stack.redis
    keys = Keys()
    outboxed = set(r.zrange(keys.outbox(), 0, -1))
    known = {rid for rid in ids if rid in outboxed}
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        found = r.mget([keys.outcome(rid) for rid in chunk])
        known |= {rid for rid, value in zip(chunk, found, strict=True) if value is not None}
    return known


def resume_s(stack: Stack, since_ms: float, kill_ms: float) -> float:
    """Seconds from the kill to the end of the longest silence at the exchange around it."""
    times = sorted(
        r["time_ms"]
        for alias in KEYS
        for r in stack.sim.admin.records(api_key=ACCOUNTS[alias][0], since_ms=since_ms)
        if r["endpoint"] in ("order/cancel", "order/cancel-batch")
    )
    before = [t for t in times if t <= kill_ms]
    after = [t for t in times if t > kill_ms]
    if not after:
        return float("inf")
    gaps = zip([before[-1] if before else kill_ms, *after[:-1]], after, strict=True)
    start, end = max(((a, b) for a, b in gaps if b - kill_ms < 30_000), key=lambda g: g[1] - g[0])
    return (end - kill_ms) / 1000 if start <= kill_ms + 1000 else (after[0] - kill_ms) / 1000
