"""Which acknowledgement survives a failover, measured: the default mode (the master applied the
enqueue) and ``min_replicas=1`` (``WAIT``: a replica holds it too) side by side, in one run,
through one failover: a master, two replicas, three Sentinels, two workers; three producer
threads in each mode; the master's replication cut for ``CUT_S``, then the master SIGKILLed.

The cut models replicas that lost their link to the master while the producers still reach it
(a partition, or replicas far behind): Redis refuses the replicas' ``PSYNC``/``SYNC``/``REPLCONF``
(ACL) and drops their connections, so nothing written after the cut reaches a replica; Sentinel
still sees both replicas (they answer it, their link down for less than Sentinel's limit) and
promotes one. Without it the replicas are sub-millisecond behind and the default mode's loss is
too rare to see (0 of 840 in ``test_sentinel_failover.py``). ``CUT_S`` exceeds the producer's
shipped ``replica_timeout_ms`` (1 s), so a durable enqueue made in the cut gets
NotReplicatedError before the kill, and is retried (same requestIds) until acknowledged.

cancelq's settings are the shipped ones (workers: the fault tier's FAULT_ENV; outcomes are not
WAITed for: an outcome lost with the old master leaves its outbox entry, and the cancel runs
again: "already gone" at the exchange). Figures: ``pytest -s -m faults
tests/faults/test_sentinel_durable.py``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from cancelq.harness.embedded_redis import RedisServer
from cancelq.harness.sentinel import SentinelCluster
from cancelq.outcomes import Outcome
from cancelq.producers.client import CancelProducer
from tests.faults.harness import (
    ACCOUNTS,
    FINAL_OK,
    wait_final,
)
from tests.faults.sentinel_load import (
    KEYS,
    Load,
    failover_stack,
    percentile_ms,
    plan,
    resume_s,
    survivors,
)
from tests.support import Stack

pytestmark = [pytest.mark.faults, pytest.mark.timeout(150)]

PER_MODE = 600
PRODUCERS = 3  # per mode
ENQUEUE_SPAN_S = 16.0  # 1,200 cancels over 16 s: 75/s, the exchange takes 60/s (3 keys of 20/s)
CUT_AT_S = 7.0
CUT_S = 2.0  # > the producer's replica_timeout_ms (1 s, shipped)
RATE_LIMITED = 10006
REPEAT_BOUND = 2  # the README's: only a cancel whose outcome was lost runs twice


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelCluster]:
    with SentinelCluster(tmp_path_factory.mktemp("sentinel")) as running:
        yield running


@pytest.fixture(scope="module")
def stack(cluster: SentinelCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with failover_stack(cluster, tmp_path_factory.mktemp("stack")) as stack:
        yield stack


def cut_replication(cluster: SentinelCluster, master: RedisServer) -> None:
    """From now on nothing the master writes reaches a replica: their connections are closed
    and their reconnections refused (NOPERM on REPLCONF/PSYNC/SYNC); clients are unaffected."""
    client = cluster.data_client(master)
    client.acl_setuser("default", enabled=True, commands=["-psync", "-sync", "-replconf"])
    client.client_kill_filter(_type="replica")


@dataclass(frozen=True)
class ModeFigures:
    acked: list[str]
    acked_before_kill: list[str]
    #: acknowledged before the kill; after the failover the new master had neither its message
    #: (nor outbox entry) nor its outcome, and it never got an outcome
    lost: list[str]
    outcomes: dict[str, Outcome]
    load: Load
    sends: Counter[int]  # n -> how many identities the exchange executed n times
    rate_limited: int  # items answered 10006

    @property
    def sent_twice(self) -> int:
        return sum(k for n, k in self.sends.items() if n >= 2)

    @property
    def missing(self) -> list[str]:
        return [rid for rid in self.acked if rid not in self.outcomes]

    def line(self, name: str) -> str:
        statuses = Counter(o.status.value for o in self.outcomes.values())
        return (
            f"  {name}: acknowledged={len(self.acked)} (before the kill "
            f"{len(self.acked_before_kill)}) lost={len(self.lost)} {self.lost[:3]} "
            f"final={len(self.acked) - len(self.missing)} missing={len(self.missing)} "
            f"statuses={dict(statuses)} enqueue-call p50={percentile_ms(self.load.call_s, 0.5):.1f}"
            f"ms p99={percentile_ms(self.load.call_s, 0.99):.1f}ms to-ack max="
            f"{max(self.load.to_ack_s):.2f}s retried={dict(self.load.failures)} "
            f"sent-twice={self.sent_twice} sends-per-identity={dict(sorted(self.sends.items()))} "
            f"answered-10006={self.rate_limited}"
        )


def _sends(stack: Stack, prefix: str) -> tuple[Counter[int], int]:
    """How many identities of ``prefix`` the exchange executed n times (a cancel answered 10006,
    rate-limited, was not executed: it is retried), and how many items it answered 10006."""
    executed: Counter[str] = Counter()
    limited = 0
    for alias in KEYS:
        for record in stack.sim.admin.records(api_key=ACCOUNTS[alias][0]):
            if record["endpoint"] not in ("order/cancel", "order/cancel-batch"):
                continue
            links = [v for k, v in record["ids"] if k == "orderLinkId" and v.startswith(prefix)]
            if record["ret_code"] == RATE_LIMITED:
                limited += len(links)
            else:
                executed.update(links)
    return Counter(executed.values()), limited


def _figures(
    stack: Stack, load: Load, prefix: str, *, kill_ms: float, known: set[str], outcomes_s: float
) -> ModeFigures:
    acked = sorted(load.acked_at)
    before = sorted(rid for rid, at in load.acked_at.items() if at * 1000 < kill_ms)
    gone = set(before) - known  # unknown to the new master right after the failover
    outcomes = wait_final(stack, [rid for rid in acked if rid not in gone], outcomes_s)
    # a worker that held one in memory may still have recorded its outcome on the new master
    outcomes |= stack.producer.outcomes(sorted(gone))
    sends, limited = _sends(stack, f"{prefix}-")
    return ModeFigures(
        acked=acked,
        acked_before_kill=before,
        lost=sorted(gone - set(outcomes)),
        outcomes=outcomes,
        load=load,
        sends=sends,
        rate_limited=limited,
    )


def _producers(stack: Stack, min_replicas: int) -> list[CancelProducer]:
    return [
        CancelProducer.from_url(stack.redis_url, sentinel=stack.sentinel, min_replicas=min_replicas)
        for _ in range(PRODUCERS)
    ]


def _joined(threads: Sequence[threading.Thread]) -> None:
    for thread in threads:
        thread.join(ENQUEUE_SPAN_S + 40)


def test_only_min_replicas_acknowledgements_survive_a_failover(
    stack: Stack, cluster: SentinelCluster
) -> None:
    default_batches, _ = plan(stack, "async", PER_MODE)
    durable_batches, _ = plan(stack, "durable", PER_MODE)
    default = Load(_producers(stack, 0), default_batches, ENQUEUE_SPAN_S)
    durable = Load(_producers(stack, 1), durable_batches, ENQUEUE_SPAN_S)
    since_ms = time.time() * 1000
    started = time.monotonic()
    threads = default.run() + durable.run()
    time.sleep(CUT_AT_S)
    old = cluster.master()
    cut_replication(cluster, old)
    time.sleep(CUT_S)
    kill_ms = time.time() * 1000
    old.kill()
    new = cluster.wait_failover(old)
    promoted_s = time.time() - kill_ms / 1000
    # what the new master knows, before a durable producer's retry could enqueue it again
    known = survivors(stack, sorted(default.acked_at) + sorted(durable.acked_at))
    _joined(threads)
    plain = _figures(stack, default, "async", kill_ms=kill_ms, known=known, outcomes_s=60)
    wait = _figures(stack, durable, "durable", kill_ms=kill_ms, known=known, outcomes_s=30)
    resumed_s = resume_s(stack, since_ms, kill_ms)
    print(
        f"\n[sentinel-durable] {2 * PER_MODE} cancels ({PRODUCERS} producers per mode), "
        f"replication cut at {CUT_AT_S:.0f}s for {CUT_S:.1f}s, then the master SIGKILLed: "
        f"port {new.port} promoted {promoted_s:.2f}s after the kill; cancels at the exchange "
        f"again {resumed_s:.2f}s after it; all done {time.monotonic() - started:.1f}s after "
        f"the start\n{plain.line('default (master acknowledges)')}\n"
        f"{wait.line('min_replicas=1 (WAIT)')}"
    )
    for mode in (plain, wait):
        assert len(mode.acked) == PER_MODE, "every batch was eventually acknowledged"
        assert {o.status for o in mode.outcomes.values()} <= FINAL_OK
        assert max(mode.sends) <= REPEAT_BOUND, mode.sends
    # the default mode: what survived reaches a final outcome; the cut's writes are lost
    assert not [rid for rid in plain.missing if rid not in plain.lost], "a survivor was lost"
    assert plain.lost, "the cut window lost nothing: the comparison below proves nothing"
    # min_replicas=1: the cut's enqueues were refused acknowledgement, retried, and every
    # acknowledged cancel survived and reached a final outcome
    assert durable.failures["NotReplicatedError"], "no durable enqueue fell in the cut"
    assert not wait.lost, wait.lost[:10]
    assert not wait.missing, wait.missing[:10]
    assert resumed_s < 15
