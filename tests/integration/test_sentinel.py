"""Redis Sentinel end to end: a master, two replicas and three Sentinels on 127.0.0.1; a worker,
the producer, the CLI and the confirmer's settings over the ``sentinel://`` URL; then a planned
failover (``SENTINEL FAILOVER``): the old master is demoted under the same processes' open
connections (their next write gets ``READONLY``, a blocked BRPOP ``UNBLOCKED``), and the new
master has none of cancelq's Lua scripts (Redis 7 does not replicate its script cache: every
EVALSHA first gets NOSCRIPT). The same worker and producer go on without a restart."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection, Queue

from cancelq.harness.embedded_redis import RedisServer
from cancelq.harness.sentinel import SentinelCluster, roles
from cancelq.harness.stack import sentinel_env
from cancelq.harness.tls import make_tls_files
from cancelq.keys import Keys
from cancelq.worker.claims import _script as claims_script
from cancelq.worker.host.kombu_channel import Transport
from cancelq.worker.pods import PodBeat
from tests.support import Stack, cancel, cli, run_cli, suite_stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SENTINEL_PASSWORD = "sentinel-pw-4b7e19c2d5"
DATA_PASSWORD = "data-pw-93a1f0c6e8"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelCluster]:
    with SentinelCluster(
        tmp_path_factory.mktemp("sentinel"),
        password=DATA_PASSWORD,
        sentinel_password=SENTINEL_PASSWORD,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def stack(cluster: SentinelCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with suite_stack(
        tmp_path_factory.mktemp("stack"),
        redis_url=cluster.url,
        sentinel=cluster.options,
        extra_secrets=[SENTINEL_PASSWORD, DATA_PASSWORD],
    ) as stack:
        stack.start_worker()
        yield stack


def _run_cancels(stack: Stack, n: int) -> None:
    producer = stack.producer
    ids = producer.enqueue_many([cancel(orderId=stack.place()) for i in range(n)])
    assert wait_until(lambda: len(producer.outcomes(ids)) == n, 30), "not every cancel ended"
    assert {o.status.value for o in producer.outcomes(ids).values()} == {"cancelled"}


def test_worker_producer_and_cli_over_the_sentinels(stack: Stack, cluster: SentinelCluster) -> None:
    _run_cancels(stack, 5)
    rid = stack.producer.enqueue(**cancel(orderId=stack.place()))
    assert stack.producer.wait(rid, 15) is not None
    done = cli(stack, "status", rid)
    assert done.returncode == 0, done.stderr
    assert '"status": "cancelled"' in done.stdout or '"status":"cancelled"' in done.stdout
    for secret in (SENTINEL_PASSWORD, DATA_PASSWORD):
        assert secret not in done.stdout + done.stderr
        assert secret not in stack.logs()


def test_the_confirmer_over_the_sentinels(stack: Stack) -> None:
    stack.start_confirmer()
    rid = stack.producer.enqueue(**cancel(orderId=stack.place()))
    record = stack.producer.wait_confirmation(rid, 30)
    assert record.result.value == "confirmed_cancelled"
    assert SENTINEL_PASSWORD not in stack.confirmers[0].log_text()


def test_a_sentinel_url_without_a_master_name_is_refused_naming_the_variable(
    stack: Stack,
) -> None:
    env = stack.service_env()
    env.pop("CANCELQ_REDIS_SENTINEL_MASTER")
    done = run_cli("status", "x", env=env)
    assert done.returncode == 2
    assert "CANCELQ_REDIS_SENTINEL_MASTER" in done.stderr
    assert DATA_PASSWORD not in done.stderr


def test_a_planned_failover_demotes_the_master_under_the_same_worker_and_producer(
    stack: Stack, cluster: SentinelCluster
) -> None:
    producer = stack.producer  # connected to the old master: READONLY after the failover
    (worker,) = stack.workers
    pid = worker.pid
    _run_cancels(stack, 3)
    old = cluster.master()
    sha = hashlib.sha1(claims_script("claim.lua").encode()).hexdigest()  # noqa: S324 (Redis' id)
    assert cluster.data_client(old).script_exists(sha) == [True]
    cluster.failover()
    new = cluster.wait_failover(old)
    assert wait_until(lambda: roles(cluster, [old]) == ["slave"], 15), "old master not demoted"
    assert cluster.data_client(new).script_exists(sha) == [False], "new master: no scripts"
    ids = producer.enqueue_many([cancel(orderId=stack.place()) for i in range(10)])
    assert wait_until(lambda: len(producer.outcomes(ids)) == 10, 45), stack.logs()[-3000:]
    assert {o.status.value for o in producer.outcomes(ids).values()} == {"cancelled"}
    assert worker.alive(), "the worker died"
    assert worker.pid == pid, "the same worker, no restart"
    assert "Unrecoverable error" not in stack.logs()
    assert cluster.data_client(new).script_exists(sha) == [True], "reloaded after NOSCRIPT"


def test_the_service_env_names_every_sentinel_setting(cluster: SentinelCluster) -> None:
    env = sentinel_env(cluster.options)
    assert env == {
        "CANCELQ_REDIS_SENTINEL_MASTER": "mymaster",
        "CANCELQ_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
    }


@pytest.mark.parametrize(
    ("transport", "reconnects"),
    [("kombu.transport.redis:Transport", False), (f"{Transport.__module__}:Transport", True)],
)
def test_a_master_demoted_under_a_blocked_brpop_is_a_lost_connection(
    transport: str, reconnects: bool
) -> None:
    """``REPLICAOF`` on a master (an operator's, an orchestrator's: Sentinel also kills the
    clients) answers every blocked BRPOP ``UNBLOCKED``: stock kombu raises it as a channel
    error (Celery: "Unrecoverable error", the worker stops); cancelq's channel as a lost
    connection, which Celery reconnects from."""
    with RedisServer() as master, RedisServer() as other:
        # one BRPOP blocked for 30 s: the demotion lands on it, not between two of them
        connection = Connection(
            master.url, transport=transport, transport_options={"polling_interval": 30}
        )
        with connection.Consumer([Queue("demoted")], callbacks=[], accept=["json"]):
            timer = threading.Timer(1.0, _demote, args=(master, other))
            timer.start()
            raised = _drain_until_it_raises(connection, 5)
            timer.join()
        assert raised is not None, "the demotion went unnoticed"
        assert "UNBLOCKED" in str(raised) or "demoted" in str(raised)
        assert isinstance(raised, connection.connection_errors) is reconnects
        connection.release()


def _drain_until_it_raises(connection: Connection, timeout_s: float) -> Exception | None:
    """One poll (kombu runs its own scripts between polls: on a replica they fail READONLY
    too, which is not what this checks)."""
    try:
        with contextlib.suppress(TimeoutError, socket.timeout):
            connection.drain_events(timeout=timeout_s)
    except Exception as exc:  # which kind is what the test checks
        return exc
    return None


def _demote(master: RedisServer, to: RedisServer) -> None:
    with redis.Redis.from_url(master.url) as client:
        client.execute_command("REPLICAOF", "127.0.0.1", str(to.port))


def test_after_an_outage_a_pod_judges_the_others_only_once_it_beat_a_ttl_again() -> None:
    """A failover leaves every pod key expired on the new master (nobody could beat): the
    first pod back must not take the others for dead before they had a TTL to beat again."""
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url, socket_timeout=1)
        sweeps: list[float] = []
        pulse = PodBeat(
            client, Keys(), "pod-a", every_s=0.1, ttl_s=0.6, after_beat=lambda _ms: sweeps.append(1)
        )
        pulse.start()
        assert not pulse.steady(), "a pod just started has not seen the others beat yet"
        assert wait_until(lambda: bool(sweeps), 3), "steady after a TTL: it sweeps"
        server.stop()
        assert wait_until(lambda: not pulse.steady(), 3)
        server.start()
        back = time.monotonic()
        sweeps.clear()
        assert wait_until(lambda: bool(sweeps), 5)
        assert time.monotonic() - back >= 0.6, "no sweep within a TTL of the outage's end"
        pulse.stop()
        client.close()


def test_cancels_go_end_to_end_through_tls_sentinels_to_a_tls_master(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """CANCELQ_REDIS_SENTINEL_TLS and _CA_FILE: the worker (broker and state), the producer and
    the CLI reach TLS-only Sentinels, and through them a TLS-only master, verifying the
    certificates against the CA; nothing answers in plain text."""
    workdir = tmp_path_factory.mktemp("tls-sentinel")
    (workdir / "stack").mkdir()
    files = make_tls_files(workdir, "sentinel")
    with SentinelCluster(
        workdir / "cluster",
        replicas=1,
        password=DATA_PASSWORD,
        sentinel_password=SENTINEL_PASSWORD,
        tls=files,
    ) as tls_cluster:
        port = tls_cluster.sentinel_ports[0]
        with pytest.raises(redis.ConnectionError):  # a plain-text client is not answered
            redis.Redis(port=port, password=SENTINEL_PASSWORD, socket_timeout=1).ping()
        assert tls_cluster.options.tls
        with suite_stack(
            workdir / "stack",
            redis_url=tls_cluster.url,
            sentinel=tls_cluster.options,
            extra_secrets=[SENTINEL_PASSWORD, DATA_PASSWORD],
        ) as stack:
            stack.start_worker()
            _run_cancels(stack, 5)
            rid = stack.producer.enqueue(**cancel(orderId=stack.place()))
            assert stack.producer.wait(rid, 15) is not None
            done = cli(stack, "status", rid, timeout_s=30)
            assert done.returncode == 0, done.stderr
            assert '"status": "cancelled"' in done.stdout or "cancelled" in done.stdout
            assert SENTINEL_PASSWORD not in done.stdout + done.stderr
