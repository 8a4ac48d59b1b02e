"""Issue 5, proof 1: SIGKILL a prefork child, and separately a whole worker, in the middle of a
2,000-cancel load; nothing is lost, nothing stays stuck, repeats stay within the bound."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from cancelq.harness.processes import WorkerProcess
from tests.faults.conftest import FAULT_ENV
from tests.faults.harness import (
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
from tests.support import Stack, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

LOAD = 2000
#: Killed mid-request: the exchange may have seen the cancel before the kill and sees it again
#: on re-delivery. Everything else: exactly once.
CRASH_REPEAT_BOUND = 2


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with fault_stack(tmp_path_factory.mktemp("crash")) as stack:
        yield stack
        assert_no_secrets(stack, stack.secrets)


def finished(stack: Stack, ids: list[str]) -> int:
    return len(stack.producer.outcomes(ids))


def load(stack: Stack, prefix: str) -> tuple[list[str], list[str]]:
    links = place(stack, "load", prefix, LOAD)
    return links, stack.producer.enqueue_many(cancels("load", links))


def test_sigkill_a_prefork_child_mid_load(stack: Stack) -> None:
    worker = stack.start_worker("--pool", "prefork", "--concurrency", "2", **FAULT_ENV)
    links, ids = load(stack, "child")
    assert wait_until(lambda: finished(stack, ids[:400]) >= 200, 60)
    victims = children(worker.pid)
    assert victims, "no prefork child found"
    os.kill(victims[0], signal.SIGKILL)
    rescuer = stack.start_worker(**FAULT_ENV)  # a second worker finishes the work
    outcomes = wait_final(stack, ids, 150)
    result = tally(stack, "sigkill-prefork-child", ids, outcomes, account="load", links=links)
    assert_none_lost_none_stuck(result)
    assert set(result.statuses) <= {s.value for s in FINAL_OK}
    assert result.per_identity[0] == 0
    assert result.max_repeats <= CRASH_REPEAT_BOUND
    assert worker.alive(), "the parent must survive its child's death"
    assert rescuer.alive()
    for w in (worker, rescuer):
        w.stop()


def test_sigkill_a_whole_worker_mid_load(stack: Stack) -> None:
    first = stack.start_worker(**FAULT_ENV)
    links, ids = load(stack, "pod")
    assert wait_until(lambda: finished(stack, ids[:400]) >= 200, 60)
    first.kill()  # SIGKILL the whole process group: a pod lost without warning
    second: WorkerProcess = stack.start_worker(**FAULT_ENV)
    outcomes = wait_final(stack, ids, 150)
    result = tally(stack, "sigkill-whole-worker", ids, outcomes, account="load", links=links)
    assert_none_lost_none_stuck(result)
    assert set(result.statuses) <= {s.value for s in FINAL_OK}
    assert result.per_identity[0] == 0
    assert result.max_repeats <= CRASH_REPEAT_BOUND
    assert second.alive()
    second.stop()
