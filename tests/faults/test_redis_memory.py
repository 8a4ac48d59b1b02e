"""A Redis at its maxmemory (policy noeviction) refuses writes: the producer gets a clear
StoreFullError for what it could not enqueue, the worker retries its refused writes and counts
them (``cancelq_store_errors_total{kind="oom"}``), and once memory is freed every cancel whose
enqueue was acknowledged reaches a final outcome. Shipped worker defaults throughout (the
visibility timeout, the reschedule patience, the outbox rescue): only the confirmer is off."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator

import pytest
import redis
import requests

from cancelq.errors import StoreFullError
from cancelq.harness.embedded_redis import RedisServer
from tests.faults.harness import (
    FINAL_OK,
    assert_none_lost_none_stuck,
    cancels,
    fault_stack,
    place,
    tally,
    wait_final,
)
from tests.support import Stack, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

#: The limit Redis runs with before and after the test holds it over its maxmemory.
MAXMEMORY = ("--maxmemory", "8mb", "--maxmemory-policy", "noeviction")
MAXMEMORY_BYTES = 8 * 1024 * 1024
OOM_HELD_S = 10.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    server = RedisServer(extra_args=MAXMEMORY)
    with fault_stack(tmp_path_factory.mktemp("oom"), redis_server=server) as stack:
        yield stack


@contextlib.contextmanager
def kept_full(client: redis.Redis) -> Iterator[None]:
    """Redis kept over its maxmemory: ``maxmemory`` set to half of what it uses, so every write
    that may grow memory is refused (OOM) and what the workers can free by deleting (a few KB)
    never brings it back under; then the limit as it was. Filling Redis with junk raced the
    workers (they finished first, or freed room for an enqueue) on a loaded machine."""
    original = client.config_get("maxmemory")["maxmemory"]
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used // 2)
    try:
        yield
    finally:
        client.config_set("maxmemory", original)


def oom_errors(port: int) -> float:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found = re.search(r'^cancelq_store_errors_total\{kind="oom"\} (\S+)$', text, re.M)
    assert found, "cancelq_store_errors_total{kind=oom} is exposed from the start"
    return float(found.group(1))


def test_oom_is_refused_clearly_retried_and_loses_nothing(stack: Stack) -> None:
    worker = stack.start_worker(CANCELQ_CONFIRM_DEADLINE_S="0")
    assert oom_errors(worker.metrics_port) == 0
    links = place(stack, "slow", "oom", 60)  # "slow": 20/s, so most wait in a lane
    producer = stack.producer
    # Few enough that cancelq's own data stays far below maxmemory (a Redis
    # full of queued cancels alone cannot drain: taking one in is a write).
    acked_links = links[:40]
    acked = producer.enqueue_many(cancels("slow", acked_links))
    r = stack.redis
    with kept_full(r):
        # While full: every enqueue is refused clearly, and nothing of it is left in Redis.
        for link in links[40:50]:
            with pytest.raises(StoreFullError, match=r"out of memory.*none of these 1 cancels"):
                producer.enqueue(**cancels("slow", [link])[0], requestId=f"refused-{link}")
            assert r.hget("cancelq:outbox:msg", f"refused-{link}") is None
        assert wait_until(lambda: oom_errors(worker.metrics_port) > 0, OOM_HELD_S), (
            "the worker met OOM and counted it"
        )
        time.sleep(OOM_HELD_S)
        done_while_full = len(producer.outcomes(acked))
        assert done_while_full < len(acked), "Redis was full while cancels still waited"
        assert worker.alive(), "the worker rides out the OOM"
    assert int(r.info("memory")["used_memory"]) < MAXMEMORY_BYTES, "room again"
    outcomes = wait_final(stack, acked, 150)
    result = tally(stack, "redis-oom", acked, outcomes, account="slow", links=acked_links)
    print(
        f"[redis-oom] acknowledged={len(acked)} final-while-full={done_while_full} "
        f"oom-errors-counted={oom_errors(worker.metrics_port):.0f}"
    )
    assert_none_lost_none_stuck(result)
    assert set(result.statuses) <= {s.value for s in FINAL_OK}
    assert result.per_identity[0] == 0, "every acknowledged cancel reached the exchange"
    assert result.max_repeats <= 2, "a cancel sent again after a refused record, at most once"
    assert worker.alive(), "the worker rode out the OOM without exiting"
    worker.stop()
