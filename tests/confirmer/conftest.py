"""Fixtures of the confirmer tests: a real Redis, the simulator as a process, a real worker, and
confirmer processes with short timings (leases, grace, pings) so failures show in seconds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cancelq.harness.embedded_redis import RedisServer
from cancelq.harness.processes import ConfirmerProcess
from tests.support import Stack, suite_stack

CONFIRM_DEADLINE_S = "8"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A Redis of the module's own, for the parts' tests (no processes)."""
    with RedisServer() as running:
        yield running


@pytest.fixture
def client(server: RedisServer) -> redis.Redis:
    """A client of that Redis (text replies), emptied for each test."""
    c = redis.Redis.from_url(server.url, decode_responses=True)
    c.flushdb()
    return c


@pytest.fixture(scope="session")
def rsa_secret_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with suite_stack(tmp_path_factory.mktemp("confirm-stack")) as stack:
        yield stack


@pytest.fixture(scope="session")
def worker_stack(rsa_secret_stack: Stack) -> Stack:
    """The shared stack with one worker registering confirmations (deadline 8 s)."""
    rsa_secret_stack.start_worker(CANCELQ_CONFIRM_DEADLINE_S=CONFIRM_DEADLINE_S)
    return rsa_secret_stack


@pytest.fixture
def stack(worker_stack: Stack) -> Stack:
    worker_stack.redis.flushdb()
    worker_stack.sim.admin.reset(faults=True)
    worker_stack.sim.admin.set_dialect("v5")
    return worker_stack


class Confirmers:
    """Starts confirmer processes against a stack; stops them all at teardown."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.started: list[ConfirmerProcess] = []

    def env(self, name: str, **overrides: str) -> dict[str, str]:
        return {
            "CANCELQ_CONFIRMER_METRICS_PORT": "0",
            "CANCELQ_CONFIRMER_REPLICA_ID": name,
            "CANCELQ_CONFIRMER_LEASE_TTL_S": "1.5",
            "CANCELQ_CONFIRMER_LEASE_CHECK_S": "0.3",
            "CANCELQ_CONFIRMER_GRACE_S": "1.0",
            "CANCELQ_CONFIRMER_FALLBACK_RETRY_S": "0.3",
            "CANCELQ_CONFIRMER_PING_INTERVAL_S": "1.0",
            "CANCELQ_CONFIRMER_PONG_TIMEOUT_S": "1.0",
            "CANCELQ_CONFIRMER_BACKOFF_MAX_S": "0.5",
            **overrides,
        }

    def start(self, name: str, **overrides: str) -> ConfirmerProcess:
        process = self.stack.confirmer(name, **self.env(name, **overrides))
        self.started.append(process)
        return process.start()

    def logs(self) -> str:
        return "\n".join(p.log_text() for p in self.started)


@pytest.fixture
def confirmers(stack: Stack) -> Iterator[Confirmers]:
    group = Confirmers(stack)
    try:
        yield group
    finally:
        for process in group.started:
            process.stop(timeout_s=5)


@pytest.fixture
def workdir(stack: Stack) -> Path:
    return stack.workdir
