"""The eviction guard: a worker refuses a Redis whose maxmemory-policy may evict keys, with a
clear message and a non-zero exit, and starts on one only with CANCELQ_ALLOW_EVICTION=1, which
it logs loudly. A real worker process against a real redis-server and the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cancelq.confirmer.main import build_confirmer
from cancelq.errors import ConfigError
from cancelq.harness.embedded_redis import RedisServer
from cancelq.settings import load_settings
from tests.support import Stack, cancel, suite_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def lru_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    server = RedisServer(extra_args=["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"])
    with suite_stack(tmp_path_factory.mktemp("lru"), redis_server=server) as stack:
        yield stack


def test_a_worker_refuses_to_start_on_allkeys_lru(lru_stack: Stack) -> None:
    worker = lru_stack.worker()
    with pytest.raises(RuntimeError, match="worker exited at start") as refused:
        worker.start(timeout_s=60)
    assert worker.process is not None
    assert worker.process.wait(10) == 2
    message = " ".join(str(refused.value).split())  # rich wraps long lines
    assert "Redis maxmemory-policy is allkeys-lru" in message
    assert "Set maxmemory-policy noeviction" in message
    assert "CANCELQ_ALLOW_EVICTION=1" in message


def test_a_worker_starts_on_allkeys_lru_with_the_override_and_says_so(lru_stack: Stack) -> None:
    worker = lru_stack.start_worker(CANCELQ_ALLOW_EVICTION="1")
    rid = lru_stack.producer.enqueue(**cancel(orderLinkId="lru-1"))
    assert lru_stack.producer.wait(rid, 20).status.value == "not_found"
    log = worker.log_text()
    assert '"level": "ERROR"' in log
    assert "CANCELQ_ALLOW_EVICTION=1" in log
    assert "no-loss guarantee does not hold" in log
    worker.stop()


def test_the_worker_checks_quietly_on_noeviction(tmp_path: Path) -> None:
    with suite_stack(tmp_path) as stack:  # redis-server's default policy: noeviction
        worker = stack.start_worker()
        assert "maxmemory-policy" not in worker.log_text()


def test_a_confirmer_refuses_allkeys_lru_too(lru_stack: Stack) -> None:
    settings = load_settings(
        redis_url=lru_stack.redis_url, accounts_file=lru_stack.accounts_file, allow_eviction=False
    )
    with pytest.raises(ConfigError, match="maxmemory-policy is allkeys-lru"):
        build_confirmer(settings)
    assert build_confirmer(settings.model_copy(update={"allow_eviction": True})) is not None
