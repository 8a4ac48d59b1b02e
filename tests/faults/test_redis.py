"""Issue 5, proof 2: Redis (with AOF) restarted under load, and Redis unreachable for 10 s. The
same worker processes reconnect and consume again, the dispatcher thread sends parked cancels
again and the heartbeat keeps going; nothing is lost or stuck."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.faults.conftest import FAULT_ENV
from tests.faults.harness import (
    FINAL_OK,
    assert_no_secrets,
    assert_none_lost_none_stuck,
    cancels,
    fault_stack,
    place,
    tally,
    wait_final,
)
from tests.support import Stack, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(200)]

CRASH_REPEAT_BOUND = 2
OUTAGE_S = 10.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with fault_stack(tmp_path_factory.mktemp("redis")) as stack:
        yield stack
        assert_no_secrets(stack, stack.secrets)


def heartbeat_age(stack: Stack, index: int) -> float:
    path = stack.workers[index].health_file
    return time.time() - float(path.read_text().split()[0])


def test_redis_with_aof_restarted_under_load(stack: Stack) -> None:
    workers = [stack.start_worker(**FAULT_ENV) for _ in range(2)]
    pids = [w.pid for w in workers]
    links = place(stack, "load", "aof", 1000)
    ids = stack.producer.enqueue_many(cancels("load", links))
    assert wait_until(lambda: len(stack.producer.outcomes(ids[:300])) >= 150, 60)
    stack.redis_server.restart(down_s=1.0)  # SIGTERM: AOF is fsynced, then the same port again
    outcomes = wait_final(stack, ids, 120)
    result = tally(stack, "redis-aof-restart", ids, outcomes, account="load", links=links)
    assert_none_lost_none_stuck(result)
    assert set(result.statuses) <= {s.value for s in FINAL_OK}
    assert result.per_identity[0] == 0
    assert result.max_repeats <= CRASH_REPEAT_BOUND
    assert [w.pid for w in workers if w.alive()] == pids, "no worker restarted or died"


def test_redis_unreachable_for_10s_then_workers_consume_again(stack: Stack) -> None:
    workers = [w for w in stack.workers if w.alive()]
    assert workers, "the workers of the previous test keep running"
    pids = [w.pid for w in workers]
    stack.redis_server.stop()
    time.sleep(OUTAGE_S)
    stack.redis_server.start()
    # "slow" has a 20/s budget: most of these wait in a lane, so only a live dispatcher
    # thread can send them; the consumer must take the rest off the queue.
    links = place(stack, "slow", "outage", 80)
    ids = stack.producer.enqueue_many(cancels("slow", links))
    outcomes = wait_final(stack, ids, 90)
    result = tally(stack, "redis-outage-10s", ids, outcomes, account="slow", links=links)
    assert_none_lost_none_stuck(result)
    assert result.statuses == {"cancelled": len(ids)}
    assert result.per_identity == {1: len(ids)}
    assert [w.pid for w in workers if w.alive()] == pids, "reconnected without a restart"
    assert all(heartbeat_age(stack, stack.workers.index(w)) < 5 for w in workers)
    for worker in workers:
        worker.stop()
