"""Issue 5, security: a password-protected, TLS-only Redis (``rediss://``) works end to end; no
secret (API secrets, the Redis password) reaches Redis, the worker log or a dead letter; the
simulator's admin API is not reachable from outside loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests

from cancelq.harness.embedded_redis import RedisServer, redis_server_binary
from cancelq.harness.tls import make_tls_files
from tests.faults.conftest import FAULT_ENV
from tests.faults.harness import (
    SECRETS,
    assert_no_secrets,
    assert_none_lost_none_stuck,
    cancels,
    fault_stack,
    place,
    tally,
    wait_final,
)
from tests.support import Stack, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(90)]

REDIS_PASSWORD = "redis-pass-91b0c4e7f2d3"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("security")
    try:
        redis_server_binary(tls=True)
    except FileNotFoundError as exc:  # only where no system redis-server is installed
        pytest.skip(str(exc))
    server = RedisServer(password=REDIS_PASSWORD, tls=make_tls_files(workdir))
    with fault_stack(workdir, redis_server=server, extra_secrets=[REDIS_PASSWORD]) as stack:
        yield stack


def non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for UDP connect
            address: str = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_tls_and_password_redis_work_and_leak_nothing(stack: Stack) -> None:
    assert stack.redis_server.url.startswith("rediss://")
    worker = stack.start_worker(**FAULT_ENV)
    links = place(stack, "load", "tls", 20)
    ids = stack.producer.enqueue_many(cancels("load", links))
    stack.redis.lpush("cancelq", f"junk {SECRETS[0]} {REDIS_PASSWORD}")
    outcomes = wait_final(stack, ids, 30)
    result = tally(stack, "tls-password", ids, outcomes, account="load", links=links)
    assert_none_lost_none_stuck(result)
    assert result.statuses == {"cancelled": len(ids)}
    assert wait_until(lambda: stack.redis.xlen("cancelq:dead-letters") == 1, 10)
    assert ":**@" in worker.log_text()  # Celery shows the broker URL masked
    worker.stop()
    scanned = assert_no_secrets(stack, stack.secrets)
    assert scanned > len(ids)


def test_simulator_admin_is_loopback_only(stack: Stack) -> None:
    assert stack.sim.base_url.startswith("http://127.0.0.1:")
    address = non_loopback_address()
    if address is None:
        return  # no other interface: nothing outside loopback can reach it at all
    try:
        reply = requests.get(f"http://{address}:{stack.sim.port}/__admin/health", timeout=3)
    except requests.ConnectionError:
        return  # bound to loopback only
    assert reply.status_code == 403
