"""Issue 16: a dead worker process's cancels go out again within seconds, with the settings
cancelq ships (nothing here shortens a timeout: visibility 300 s, pod TTL 2 s, beat 0.5 s).

Each kill: two worker pods under load, one SIGKILLed (what an OOM kill does), a replacement
started a second later as Kubernetes would. What the dead pod held is read from its unacked
hash right after the kill (nothing touches it before its TTL ends); each held cancel's
takeover time is its first arrival at the exchange minus the kill. Cancels that reached the
exchange before anyone could take them over (on the wire) are the only ones allowed twice.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import pytest

from cancelq.console.inflight import held_fields
from cancelq.keys import Keys
from cancelq.settings import Settings
from cancelq.worker.pods import beaten_within
from tests.faults.harness import (
    ACCOUNTS,
    FINAL_OK,
    assert_no_secrets,
    assert_none_lost_none_stuck,
    cancels,
    children,
    fault_stack,
    place,
    tally,
    wait_final,
)
from tests.faults.tcp_proxy import TcpProxy
from tests.support import Stack, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

KEYS = Keys()
POD_TTL_S = Settings.model_fields["pod_ttl_s"].default  # the shipped default
KILLS = 20
PER_ROUND = 48
#: Each cancel takes this long at the exchange, so a pod always has requests in flight.
EXCHANGE_LATENCY_MS = 250
TARGET_P99_S = 3.0
FROZEN_S = 10.0
#: A partition long enough for the pod's key to expire (2 s) and the others to take over.
CUT_S = 5.0
#: No other pod can send what a pod held before its key expires: at the earliest a TTL after
#: its last beat (2 s - 0.5 s). An arrival before that is the pod's own request, written
#: before the kill and read by the exchange a little later (a busy machine): on the wire.
EARLIEST_TAKEOVER_MS = 1500.0
#: A prefork child's death is Celery's to handle (billiard sees the exit, the task fails with
#: WorkerLostError, task_reject_on_worker_lost requeues it, a new child forks): measured
#: p50 4.0 s, p99 4.7 s here; the pod's heartbeat plays no part (the parent lives).
CHILD_TARGET_P99_S = 6.0
#: The premise of the slow-exchange scenarios: every cancel its own 250 ms request, the taker
#: busy with them. With backlog coalescing on (the default) the taker's late cancels are parked
#: and leave its lane one batch of one at a time, 250 ms apart (sigkill-pod p99 3.2-3.9 s in 4
#: runs, frozen 3.36 s, cut 3.07 s; the hand-back itself at most 2.42 s): the saturated
#: taker's throughput, not the takeover, which is what these measure. As in test_shutdown.py,
#: coalescing is off to create the premise; the burst test at the end keeps every default.
SLOW_SINGLES = {"CANCELQ_COALESCE_AFTER_MS": "0"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with fault_stack(tmp_path_factory.mktemp("takeover")) as stack:
        yield stack
        assert_no_secrets(stack, stack.secrets)


def pod_of(stack: Stack, pid: int) -> str:
    """The pod id of the worker process ``pid`` (``<host>-<pid>-<random>``)."""
    for raw in stack.redis.zrange(KEYS.pods(), 0, -1):
        pod = raw if isinstance(raw, str) else raw.decode()
        if f"-{pid}-" in pod:
            return pod
    raise AssertionError(f"no pod registered for pid {pid}")


def held_links(stack: Stack, pod: str) -> set[str]:
    """The orderLinkIds of every cancel in a pod's unacked hash (a batch, item by item)."""
    entries = stack.redis.hvals(KEYS.pod_unacked(pod))
    return {fields["orderLinkId"] for entry in entries for fields in held_fields(entry)}


def arrivals(stack: Stack, account: str, since_ms: float) -> dict[str, list[float]]:
    """Every arrival (wall clock ms, in order) at the exchange of each orderLinkId since
    ``since_ms``."""
    seen: dict[str, list[float]] = {}
    for record in stack.sim.admin.records(api_key=ACCOUNTS[account][0], since_ms=since_ms):
        for kind, value in record["ids"]:
            if kind == "orderLinkId":
                seen.setdefault(value, []).append(record["time_ms"])
    return {link: sorted(times) for link, times in seen.items()}


@dataclass
class Kill:
    at_ms: float
    held: set[str]
    on_wire: set[str] = field(default_factory=set)  # held, and at the exchange before the kill
    takeover_s: list[float] = field(default_factory=list)  # per held cancel not on the wire
    #: per held cancel on the wire: when the takeover sent it again (the pod's own send may
    #: have reached the exchange, but nobody could know: its outcome was never written)
    resent_s: list[float] = field(default_factory=list)

    def resent_by_others_s(self) -> list[float]:
        """Kill to the exchange's receipt of each held cancel from the pod that took over."""
        return self.takeover_s + self.resent_s


@dataclass
class Rounds:
    """Every kill of one scenario and the load it ran under."""

    name: str
    kills: list[Kill] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    since_ms: float = field(default_factory=lambda: time.time() * 1000)

    def report(self) -> float:
        """Print the figures; returns the p99 (seconds) from a kill to each held cancel sent
        by the pod that took it over (first sends and re-sends of what was on the wire)."""
        takeovers = sorted(s for k in self.kills for s in k.resent_by_others_s())
        first = sorted(s for k in self.kills for s in k.takeover_s)
        worst = sorted(max(k.resent_by_others_s(), default=0.0) for k in self.kills)
        p99 = takeovers[min(len(takeovers) - 1, int(len(takeovers) * 0.99))]
        print(
            f"\n[{self.name}] kills={len(self.kills)} held={sum(len(k.held) for k in self.kills)}"
            f" on-the-wire={sum(len(k.on_wire) for k in self.kills)} "
            f"sent-by-the-taker={len(takeovers)} (first sends {len(first)}) "
            f"p50={statistics.median(takeovers):.2f}s p99={p99:.2f}s max={takeovers[-1]:.2f}s; "
            f"last re-send per kill p50={statistics.median(worst):.2f}s max={worst[-1]:.2f}s"
        )
        return p99

    def check(
        self, stack: Stack, target_p99_s: float = TARGET_P99_S, *, resumes: bool = False
    ) -> None:
        """Lost 0; final and cancelled; p99 on target. Sent twice: a dead pod's cancels only
        when they were on the wire; a pod that ``resumes`` also those it had claimed (the
        fence passed) and not yet written to the socket when it froze: the window no token
        closes, counted here."""
        p99 = self.report()
        outcomes = wait_final(stack, self.ids, 30)
        result = tally(stack, self.name, self.ids, outcomes, account="load", links=self.links)
        assert_none_lost_none_stuck(result)
        assert set(result.statuses) <= {s.value for s in FINAL_OK}
        assert result.per_identity[0] == 0
        counts = stack.sim.admin.cancel_counts(api_key=ACCOUNTS["load"][0], since_ms=self.since_ms)
        twice = {link for link, n in counts.get("orderLinkId", {}).items() if n > 1}
        on_wire = set().union(*(k.on_wire for k in self.kills))
        held = set().union(*(k.held for k in self.kills))
        window = twice - on_wire
        print(
            f"[{self.name}] sent twice: {len(twice)} (on the wire at a kill: {len(on_wire)}; "
            f"past the fence, not yet on the wire: {len(window)} of {len(held - on_wire)} held)"
        )
        window_max = stack.sim.admin.max_requests_in_window(
            api_key=ACCOUNTS["load"][0], since_ms=self.since_ms
        )
        assert all(row["max"] <= ACCOUNTS["load"][3] for row in window_max["list"]), window_max
        allowed = held if resumes else on_wire
        assert twice <= allowed, f"sent twice, never held: {sorted(twice - allowed)[:5]}"
        assert p99 <= target_p99_s, f"takeover p99 {p99:.2f}s"


def one_round(
    stack: Stack,
    rounds: Rounds,
    pod: str,
    disrupt: Callable[[], None],
    *,
    per_round: int = PER_ROUND,
    after: Callable[[], None] = lambda: None,
) -> None:
    """Load, ``disrupt`` while ``pod`` holds cancels, ``after`` (recovery); then measure."""
    prefix = f"{rounds.name}-{len(rounds.kills)}"
    links = place(stack, "load", prefix, per_round)
    started_ms = time.time() * 1000
    ids = stack.producer.enqueue_many(cancels("load", links))
    assert wait_until(lambda: len(held_links(stack, pod)) >= 2, 10), "the victim holds nothing"
    held = held_links(stack, pod)
    disrupt()
    kill = Kill(time.time() * 1000, held | held_links(stack, pod))
    after()
    outcomes = wait_final(stack, ids, 60)
    assert len(outcomes) == len(ids), f"{len(ids) - len(outcomes)} cancels without outcome"
    earliest_ms = kill.at_ms + EARLIEST_TAKEOVER_MS
    seen = arrivals(stack, "load", started_ms)
    for link in kill.held:
        first, *later = seen[link]
        if first >= earliest_ms:
            kill.takeover_s.append((first - kill.at_ms) / 1000)
            continue
        kill.on_wire.add(link)
        resent = [t for t in later if t >= earliest_ms]
        if resent:
            kill.resent_s.append((resent[0] - kill.at_ms) / 1000)
    rounds.kills.append(kill)
    rounds.ids += ids
    rounds.links += links


@pytest.fixture
def slow_exchange(stack: Stack) -> Iterator[None]:
    """Each cancel takes EXCHANGE_LATENCY_MS at the exchange: pods always hold some."""
    stack.sim.admin.set_faults(latency_ms=EXCHANGE_LATENCY_MS, endpoints=["order/cancel"])
    yield
    stack.sim.admin.clear_faults()
    for worker in list(stack.workers):
        worker.stop()
        stack.workers.remove(worker)


def test_a_sigkilled_pods_cancels_reach_the_exchange_within_seconds(
    stack: Stack, slow_exchange: None
) -> None:
    premise = SLOW_SINGLES
    rounds = Rounds("sigkill-pod")
    stack.start_worker(**premise)
    stack.start_worker(**premise)
    for _ in range(KILLS):
        victim = stack.workers[0]  # the older one; the replacement joins at the end

        def replace() -> None:
            stack.workers.remove(victim)  # noqa: B023 - called within this iteration
            time.sleep(1.0)  # as Kubernetes would, a second later
            stack.start_worker(**premise)

        one_round(stack, rounds, pod_of(stack, victim.pid), victim.kill, after=replace)
    rounds.check(stack)


def test_a_sigkilled_prefork_childs_cancels_reach_the_exchange_within_seconds(
    stack: Stack, slow_exchange: None
) -> None:
    """Celery's parent survives and requeues what the child ran (task_reject_on_worker_lost);
    the parent's unacked record holds every message the pod had, the child's among them."""
    rounds = Rounds("sigkill-child")
    parent = stack.start_worker("--pool", "prefork", "--concurrency", "2")
    stack.start_worker()
    pod = pod_of(stack, parent.pid)
    for _ in range(KILLS):
        victim = children(parent.pid)[0]
        one_round(stack, rounds, pod, partial(os.kill, victim, signal.SIGKILL), per_round=16)
        assert parent.alive()
    rounds.check(stack, target_p99_s=CHILD_TARGET_P99_S)


def test_a_pod_frozen_for_10_s_is_taken_over_and_fenced_when_it_resumes(
    stack: Stack, slow_exchange: None
) -> None:
    """SIGSTOP (a long pause, a frozen VM) for 10 s, then SIGCONT: the others take over after
    the pod TTL; the resumed pod sends nothing they took (a claim of a delivery it no longer
    holds is refused: "taken"); what it had on the wire when it froze may go twice."""
    rounds = Rounds("sigstop-10s")
    frozen = stack.start_worker(**SLOW_SINGLES)
    stack.start_worker(**SLOW_SINGLES)
    pod = pod_of(stack, frozen.pid)
    for _ in range(KILLS):
        one_round(
            stack,
            rounds,
            pod,
            lambda: os.killpg(frozen.pid, signal.SIGSTOP),
            after=lambda: (time.sleep(FROZEN_S), os.killpg(frozen.pid, signal.SIGCONT)),
            per_round=24,
        )
        assert wait_until(lambda: beaten_within(stack.redis, KEYS, pod, POD_TTL_S), 10), "not back"
    rounds.check(stack, resumes=True)


def test_a_pod_cut_off_from_redis_is_taken_over_and_fenced_when_it_reconnects(
    stack: Stack, slow_exchange: None
) -> None:
    """One pod's connections to Redis (broker and state) go through a proxy that the test cuts
    for CUT_S while the other pod keeps its own: the cut-off pod cannot beat, the others take
    over after the pod TTL; when the partition heals, what the pod wrote meanwhile reaches
    Redis late and its claims of deliveries it no longer holds are refused ("taken")."""
    rounds = Rounds("cut-from-redis")
    upstream = stack.redis_server.port
    with TcpProxy(upstream) as proxy:
        url = stack.redis_url.replace(f":{upstream}/", f":{proxy.port}/")
        cut_off = stack.start_worker(CANCELQ_REDIS_URL=url, **SLOW_SINGLES)
        stack.start_worker(**SLOW_SINGLES)
        pod = pod_of(stack, cut_off.pid)
        for _ in range(KILLS):
            one_round(
                stack,
                rounds,
                pod,
                proxy.cut,
                after=lambda: (time.sleep(CUT_S), proxy.heal()),
                per_round=24,
            )
            assert wait_until(lambda: beaten_within(stack.redis, KEYS, pod, POD_TTL_S), 30), (
                "not back"
            )
            assert cut_off.alive()
        rounds.check(stack, resumes=True)


def test_the_users_burst_three_keys_of_20_per_s_one_pod_killed(stack: Stack) -> None:
    """The report's scenario: 2 pods, 360 cancels across three keys of 20/s, one pod
    SIGKILLed 2 s into the burst, a replacement 1 s later. Before: 4 orders still open 45 s
    after the kill. Now: every order closed within what the budget imposes plus the takeover
    target, and no key over its limit at the exchange."""
    for worker in list(stack.workers):
        worker.stop()
        stack.workers.remove(worker)
    stack.start_worker()
    stack.start_worker()
    keys = ("desk1", "desk2", "desk3")
    per_key = 120
    links = {alias: place(stack, alias, f"burst-{alias}", per_key) for alias in keys}
    since_ms = time.time() * 1000
    ids = stack.producer.enqueue_many([c for alias in keys for c in cancels(alias, links[alias])])
    started = time.monotonic()
    time.sleep(2.0)
    stack.workers[0].kill()
    stack.workers.pop(0)
    time.sleep(1.0)
    stack.start_worker()
    budget_s = per_key / ACCOUNTS["desk1"][3]  # each key's own budget: 6 s for 120 at 20/s
    outcomes = wait_final(stack, ids, budget_s + 30)
    done_s = time.monotonic() - started
    statuses = Counter(o.status.value for o in outcomes.values())
    print(
        f"\n[burst] {len(outcomes)}/{len(ids)} final {dict(statuses)} "
        f"{done_s:.1f}s after the burst began (the budget alone: {budget_s:.0f}s), one pod "
        f"killed at 2 s"
    )
    assert len(outcomes) == len(ids)
    assert set(statuses) <= {s.value for s in FINAL_OK}
    for alias in keys:
        open_orders = stack.sim.admin.orders(uid=ACCOUNTS[alias][2], open_only=True)
        assert open_orders == [], f"{alias}: {len(open_orders)} orders still open"
        window = stack.sim.admin.max_requests_in_window(
            api_key=ACCOUNTS[alias][0], since_ms=since_ms
        )
        assert all(row["max"] <= ACCOUNTS[alias][3] for row in window["list"]), window
    assert done_s <= budget_s + TARGET_P99_S
