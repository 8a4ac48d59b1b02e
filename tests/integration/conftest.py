from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cancelq.harness.embedded_redis import RedisServer
from cancelq.keys import Keys
from tests.support import Stack, suite_stack, wait_until

pytestmark = pytest.mark.integration
KEYS = Keys()


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A Redis of the module's own, for the scripts' tests (no worker, no simulator)."""
    with RedisServer() as running:
        yield running


@pytest.fixture
def client(server: RedisServer) -> redis.Redis:
    """A client of that Redis, emptied for each test."""
    client = redis.Redis.from_url(server.url)
    client.flushdb()
    return client


@pytest.fixture(scope="session")
def stack_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with suite_stack(tmp_path_factory.mktemp("stack")) as stack:
        stack.start_worker()
        yield stack


@pytest.fixture
def stack(stack_session: Stack) -> Stack:
    """The shared stack, with an empty Redis and a fresh simulator (no orders, no faults).
    The running worker is registered again (its next beat) before the test: a worker claims
    only while its own beat is fresh (worker/own_beat.py), which an emptied registry is not."""
    stack_session.redis.flushdb()
    if any(worker.alive() for worker in stack_session.workers):
        assert wait_until(lambda: stack_session.redis.zcard(KEYS.pods()) > 0, 10), "no beat"
    stack_session.sim.admin.reset(faults=True)
    stack_session.sim.admin.set_dialect("v5")
    return stack_session


@pytest.fixture
def workdir(stack: Stack) -> Path:
    return stack.workdir
