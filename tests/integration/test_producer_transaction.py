"""The producer's one-connection transaction (``producers/transaction.py``) against a real
Redis: it reconnects after a Redis restart as redis-py's own pipelines do, and an error inside
the transaction is raised, never swallowed."""

from __future__ import annotations

import pytest
import redis

from cancelq.errors import StoreError
from cancelq.harness.embedded_redis import RedisServer
from cancelq.producers.client import CancelProducer
from cancelq.producers.transaction import run_transaction
from tests.support import cancel

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_the_same_producer_enqueues_again_after_a_redis_restart() -> None:
    with RedisServer() as server:
        producer = CancelProducer.from_url(server.url)
        first = producer.enqueue(**cancel(orderLinkId="tx-1"))
        server.restart()  # the pooled connection is dead now
        second = producer.enqueue(**cancel(orderLinkId="tx-2"))
        stored = redis.Redis.from_url(server.url, decode_responses=True)
        assert stored.llen("cancelq") == 1  # no AOF: the first was lost with the restart
        assert stored.hkeys("cancelq:outbox:msg") == [second]
        assert first != second


def test_an_error_inside_exec_is_raised(client: redis.Redis) -> None:
    client.set("cancelq:outbox", "not a zset")
    with pytest.raises(StoreError, match="WRONGTYPE"):
        CancelProducer(client).enqueue(**cancel(orderLinkId="tx-3"))


def test_a_command_refused_while_queued_aborts_the_whole_transaction(client: redis.Redis) -> None:
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        run_transaction(client, [("LPUSH", "cancelq", "m"), ("ZADD", "cancelq:outbox")])
    assert client.llen("cancelq") == 0
    assert run_transaction(client, [("LPUSH", "cancelq", "m")]) is None
    assert run_transaction(client, [("LPUSH", "cancelq", "m")], replicas=1, timeout_ms=10) == 0
    assert client.llen("cancelq") == 2
