"""``cancelq health``, the probe of every worker and confirmer container: cheap, and about the
process only (a broker outage must not make Kubernetes or Docker restart healthy pods)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cancelq.outcomes import Status
from tests.support import Stack, cancel, suite_stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: The probes' own timeout (docker-compose.yml and deploy/k8s: timeoutSeconds 5).
PROBE_TIMEOUT_S = 5.0
#: Modules a liveness probe has no use for; each costs import time on every probe.
HEAVY = ("celery", "kombu", "redis", "prometheus_client", "requests", "aiohttp")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with suite_stack(tmp_path) as stack:
        stack.start_worker(CANCELQ_HEARTBEAT_S="1")
        yield stack


def health(health_file: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cancelq", "health"],
        env={**os.environ, "CANCELQ_HEALTH_FILE": health_file, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done, time.perf_counter() - started


def stamp(health_file: str) -> float:
    """The Unix time of the last heartbeat in the file (0 when there is none yet)."""
    try:
        return float(Path(health_file).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def test_health_is_cheap_and_reports_what_it_imports(stack: Stack) -> None:
    health_file = stack.workers[0].env["CANCELQ_HEALTH_FILE"]
    runs = [health(health_file, CANCELQ_HEARTBEAT_S="1") for _ in range(3)]
    assert all(done.returncode == 0 and "ready" in done.stdout for done, _ in runs), runs
    wall = statistics.median(seconds for _, seconds in runs)
    profiled = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cancelq", "health"],
        env={**os.environ, "CANCELQ_HEALTH_FILE": health_file, "CANCELQ_HEARTBEAT_S": "1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert profiled.returncode == 0
    cumulative_us = {
        parts[2].strip(): int(parts[1])
        for line in profiled.stderr.splitlines()
        if line.startswith("import time:") and (parts := line.split("|"))[1].strip().isdigit()
    }
    heavy = {m: cumulative_us[m] / 1000 for m in HEAVY if m in cumulative_us}
    observability_ms = cumulative_us.get("cancelq.worker.observability", 0) / 1000
    print(  # the figures the issue asks for
        f"\ncancelq health: median wall {wall * 1000:.0f} ms over 3 runs; "
        f"cancelq.cli.app {cumulative_us.get('cancelq.cli.app', 0) / 1000:.0f} ms, "
        f"cancelq.worker.observability {observability_ms:.0f} ms "
        f"of imports; heavy modules imported (ms): {heavy}"
    )
    assert wall < PROBE_TIMEOUT_S  # one probe must fit in its timeout with a wide margin


def test_a_broker_outage_does_not_fail_the_health_of_live_processes(stack: Stack) -> None:
    worker_file = stack.workers[0].env["CANCELQ_HEALTH_FILE"]
    confirmer = stack.start_confirmer(CANCELQ_CONFIRMER_LEASE_CHECK_S="0.5")
    confirmer_file = confirmer.env["CANCELQ_HEALTH_FILE"]
    try:
        stack.redis_server.stop()
        stopped_at = time.time()
        try:
            # 3 heartbeats past the stop: a heartbeat from before it would be stale by now
            assert wait_until(lambda: stamp(worker_file) > stopped_at + 3.5, timeout_s=20)
            assert wait_until(lambda: stamp(confirmer_file) > stopped_at + 3.5, timeout_s=20)
            worker_health, _ = health(worker_file, CANCELQ_HEARTBEAT_S="1")
            confirmer_health, _ = health(confirmer_file)
            assert worker_health.returncode == 0, worker_health.stderr
            assert confirmer_health.returncode == 0, confirmer_health.stderr
            assert stack.workers[0].alive()
            assert confirmer.alive()
        finally:
            stack.redis_server.start()
        order_id = stack.place()
        rid = stack.producer.enqueue(**cancel(orderId=order_id))
        assert stack.producer.wait(rid, 45).status is Status.CANCELLED  # and it recovers
    finally:
        confirmer.stop()
    assert health(worker_file, CANCELQ_HEARTBEAT_S="1")[0].returncode == 0
