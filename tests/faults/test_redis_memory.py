"""A Redis at its maxmemory (policy noeviction) refuses writes: the producer gets a clear
StoreFullError for what it could not enqueue, the worker retries its refused writes and counts
them (``cancelq_store_errors_total{kind="oom"}``), and once memory is freed every cancel whose
enqueue was acknowledged reaches a final outcome. Shipped worker defaults throughout (the
visibility timeout, the reschedule patience, the outbox rescue): only the confirmer is off."""

from __future__ import annotations

import contextlib
import re
import threading
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

#: An empty Redis 7 already uses about 0.9 MB, the clients of a worker and the harness 0.15 MB:
#: with 2 MB, cancelq's own working data (40 queued cancels, their outbox, claims, lanes) left
#: Redis over the limit after the junk was freed. 8 MB: the junk fills most of it.
MAXMEMORY = ("--maxmemory", "8mb", "--maxmemory-policy", "noeviction")
OOM_HELD_S = 10.0
JUNK = "junk:"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    server = RedisServer(extra_args=MAXMEMORY)
    with fault_stack(tmp_path_factory.mktemp("oom"), redis_server=server) as stack:
        yield stack


def fill_until_oom(client: redis.Redis, start: int = 0) -> int:
    """SET 1 KB junk keys until Redis refuses one with OOM; returns how many were written."""
    written = start
    while True:
        with client.pipeline(transaction=False) as pipe:
            for i in range(written, written + 50):
                pipe.set(f"{JUNK}{i}", "x" * 1024)
            try:
                pipe.execute()
            except redis.exceptions.OutOfMemoryError:
                return written
        written += 50


@contextlib.contextmanager
def kept_full(client: redis.Redis) -> Iterator[None]:
    """Redis full of junk, and kept full: whatever the workers free (deletes are allowed at
    maxmemory) is filled again at once, so every write that grows memory is refused."""
    stop = threading.Event()
    written = [fill_until_oom(client)]

    def top_up() -> None:
        while not stop.is_set():
            written[0] = fill_until_oom(client, written[0])
            stop.wait(0.005)

    thread = threading.Thread(target=top_up, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def free_junk(client: redis.Redis) -> int:
    keys = list(client.scan_iter(f"{JUNK}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    return len(keys)


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
    # Few enough that cancelq's own data stays far below maxmemory: the junk fills it (a Redis
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
    junk = free_junk(r)
    assert junk > 0, "the junk, not the cancels, filled Redis"
    outcomes = wait_final(stack, acked, 150)
    result = tally(stack, "redis-oom", acked, outcomes, account="slow", links=acked_links)
    print(
        f"[redis-oom] acknowledged={len(acked)} "
        f"junk-keys={junk} final-while-full={done_while_full} "
        f"oom-errors-counted={oom_errors(worker.metrics_port):.0f}"
    )
    assert_none_lost_none_stuck(result)
    assert set(result.statuses) <= {s.value for s in FINAL_OK}
    assert result.per_identity[0] == 0, "every acknowledged cancel reached the exchange"
    assert result.max_repeats <= 2, "a cancel sent again after a refused record, at most once"
    assert worker.alive(), "the worker rode out the OOM without exiting"
    worker.stop()
