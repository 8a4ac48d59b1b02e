"""CANCELQ_KILL_QUEUE moves kill requests to another list, on both sides: producers push
there (the CLI from the variable, the Python API from its argument) and workers read there."""

from __future__ import annotations

import json

import pytest
import redis

from cancelq.contract import KILL_QUEUE, KILL_TASK_NAME
from cancelq.harness.embedded_redis import RedisServer
from cancelq.outcomes import Status
from cancelq.producers.client import CancelProducer
from tests.support import Stack, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

CUSTOM = "ops.kill"


def test_the_cli_pushes_kills_to_the_configured_queue(
    server: RedisServer, client: redis.Redis
) -> None:
    env = {"CANCELQ_REDIS_URL": server.url, "CANCELQ_KILL_QUEUE": CUSTOM}
    done = run_cli("kill", "--account", "main", "--wait", "0", env=env)
    assert done.returncode == 0, done.stderr
    assert client.llen(KILL_QUEUE) == 0
    (raw,) = client.lrange(CUSTOM, 0, -1)
    message = json.loads(raw)
    assert message["headers"]["task"] == KILL_TASK_NAME
    assert message["properties"]["delivery_info"]["routing_key"] == CUSTOM
    assert message["headers"]["id"] == done.stdout.strip()


def test_the_python_api_pushes_kills_to_the_queue_it_is_given(
    server: RedisServer, client: redis.Redis
) -> None:
    CancelProducer.from_url(server.url, kill_queue=CUSTOM).kill("main", "spot")
    assert (client.llen(CUSTOM), client.llen(KILL_QUEUE)) == (1, 0)


def test_a_worker_reading_the_configured_queue_runs_the_kill(stack: Stack) -> None:
    worker = stack.start_worker(CANCELQ_KILL_QUEUE=CUSTOM)
    try:
        order_id = stack.place(order_link_id="custom-kill-queue")
        producer = CancelProducer.from_url(stack.redis_server.url, kill_queue=CUSTOM)
        kill_id = producer.kill("main", "spot", symbol="BTCUSDT")
        assert producer.wait(kill_id, 15).status is Status.KILLED
        assert stack.order_status(order_id) == "Cancelled"
    finally:
        worker.stop()
        stack.workers.remove(worker)
