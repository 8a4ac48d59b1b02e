"""Durable enqueue and outcomes: "enqueued" can mean "held by N replicas" (Redis ``WAIT``).

A real master and one replica (``--replicaof``). With the replica frozen (SIGSTOP) the producer
raises NotReplicatedError after its timeout, the cancel still queued on the master; enqueued
again with the same requestId it is answered once. A worker asked to wait for a replica after
its outcomes counts a shortfall and still records the outcome.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator

import pytest
import redis
import requests

from cancelq.errors import NotReplicatedError, StoreError
from cancelq.harness.embedded_redis import RedisServer
from cancelq.producers.client import REPLICA_TIMEOUT_MS, CancelProducer
from tests.support import Stack, cancel, suite_stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TIMEOUT_MS = REPLICA_TIMEOUT_MS  # the shipped default: at 300 ms a busy CI machine found 0 replicas


def replica_of(master: RedisServer) -> RedisServer:
    return RedisServer(extra_args=["--replicaof", "127.0.0.1", str(master.port)])


def in_sync(replica: RedisServer, master: redis.Redis) -> bool:
    """Up on both sides: the replica's link, and the master's ``WAIT`` counting the replica."""
    info = redis.Redis.from_url(replica.url, decode_responses=True).info("replication")
    return info.get("master_link_status") == "up" and int(master.wait(1, 1000)) >= 1


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with suite_stack(tmp_path_factory.mktemp("replicas")) as stack:
        yield stack


@pytest.fixture(scope="module")
def replica(stack: Stack) -> Iterator[RedisServer]:
    with replica_of(stack.redis_server) as server:
        assert wait_until(lambda: in_sync(server, stack.redis), 20), "the replica syncs"
        yield server


@pytest.fixture
def frozen(stack: Stack, replica: RedisServer) -> Iterator[RedisServer]:
    replica.send_signal(signal.SIGSTOP)
    try:
        yield replica
    finally:
        replica.send_signal(signal.SIGCONT)
        assert wait_until(lambda: in_sync(replica, stack.redis), 20)


def durable(stack: Stack, replicas: int = 1) -> CancelProducer:
    return CancelProducer.from_url(stack.redis_url, min_replicas=replicas)


def test_an_enqueue_held_by_the_replica_returns(stack: Stack, replica: RedisServer) -> None:
    rid = durable(stack).enqueue(**cancel(orderLinkId="dur-1"), requestId="dur-1")
    copy = redis.Redis.from_url(replica.url)
    assert copy.hexists("cancelq:outbox:msg", rid), "the replica holds it when enqueue returns"
    assert copy.zscore("cancelq:outbox", rid) is not None


def test_a_frozen_replica_makes_the_enqueue_raise_after_its_timeout(
    stack: Stack, frozen: RedisServer
) -> None:
    producer = durable(stack)
    started = time.monotonic()
    with pytest.raises(NotReplicatedError, match="may not survive a failover") as short:
        producer.enqueue_many(
            [cancel(orderLinkId=f"dur-{i}", requestId=f"dur-{i}") for i in (2, 3)]
        )
    waited = time.monotonic() - started
    assert TIMEOUT_MS / 1000 <= waited < TIMEOUT_MS / 1000 + 2
    assert isinstance(short.value, StoreError)
    assert (short.value.acked, short.value.wanted) == (0, 1)
    assert short.value.request_ids == ["dur-2", "dur-3"]
    assert "same requestId" in str(short.value)
    master = stack.redis
    assert master.hexists("cancelq:outbox:msg", "dur-2"), "still enqueued on the master"
    assert master.hexists("cancelq:outbox:msg", "dur-3")


def test_more_replicas_than_exist_raise_too(stack: Stack, replica: RedisServer) -> None:
    with pytest.raises(NotReplicatedError, match="only 1 of 2 replicas"):
        durable(stack, replicas=2).enqueue(**cancel(orderLinkId="dur-4"))


def store_errors(port: int, kind: str) -> float:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found = re.search(rf'^cancelq_store_errors_total\{{kind="{kind}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else -1.0


def test_a_retried_enqueue_with_the_same_request_id_is_answered_once(
    stack: Stack, replica: RedisServer
) -> None:
    order = stack.place(order_link_id="dur-retry")
    fields = cancel(orderLinkId="dur-retry", requestId="dur-retry")
    replica.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(NotReplicatedError):
            durable(stack).enqueue(**fields)
    finally:
        replica.send_signal(signal.SIGCONT)
    assert wait_until(lambda: in_sync(replica, stack.redis), 20)
    assert durable(stack).enqueue(**fields) == "dur-retry"  # the caller's retry
    worker = stack.start_worker(CANCELQ_OUTCOME_MIN_REPLICAS="1")
    outcome = stack.producer.wait("dur-retry", 20)
    assert outcome.status.value == "cancelled"
    assert outcome.duplicateOf is None
    assert stack.order_status(order) == "Cancelled"
    assert wait_until(lambda: not stack.redis.hexists("cancelq:outbox:msg", "dur-retry"), 10)
    counts = stack.sim.admin.cancel_counts(api_key="MAINKEY00000001")
    assert counts["orderLinkId"].get("dur-retry") == 1, "two messages, one cancel sent"
    assert redis.Redis.from_url(replica.url).exists("cancelq:outcome:dur-retry")
    assert store_errors(worker.metrics_port, "not_replicated") == 0
    worker.stop()


def test_a_worker_counts_outcomes_a_frozen_replica_did_not_take(
    stack: Stack, frozen: RedisServer
) -> None:
    worker = stack.start_worker(CANCELQ_OUTCOME_MIN_REPLICAS="1")
    rid = stack.producer.enqueue(**cancel(orderLinkId="dur-frozen"))
    assert stack.producer.wait(rid, 20).status.value == "not_found"  # recorded on the master
    assert wait_until(lambda: store_errors(worker.metrics_port, "not_replicated") >= 1, 10)
    assert f"replicas held them within {TIMEOUT_MS} ms" in worker.log_text()
    worker.stop()
