"""The Sentinel variants: ``docker-compose.sentinel.yml`` (an override of docker-compose.yml)
and ``deploy/k8s-sentinel`` (a kustomize overlay of deploy/k8s).

Both are read as YAML and checked against each other and cancelq's settings; then what the
compose file names is run here, without Docker: its redis-server commands and each Sentinel's
own shell script (which writes the sentinel.conf it runs), with Docker's names swapped for
127.0.0.1 and free ports, until the compose healthcheck passes; then cancelq, configured with
the compose environment (the same swaps), reaches the master through those Sentinels. The
overlay is built with ``kubectl kustomize``, validated against the Kubernetes schemas, and
its environment loaded as cancelq's settings.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import redis
import yaml

from cancelq.harness.embedded_redis import free_port, redis_server_binary
from cancelq.harness.processes import end_process
from cancelq.producers.client import CancelProducer
from cancelq.redis_client import parse_sentinel_url
from cancelq.settings import load_settings
from tests.support import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
VARIANT = yaml.safe_load((REPO_ROOT / "docker-compose.sentinel.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = VARIANT["services"]
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
REPLICAS = ("redis-replica-1", "redis-replica-2")
CANCELQ_SERVICES = ("worker", "confirmer", "producer")
OVERLAY = REPO_ROOT / "deploy" / "k8s-sentinel"
KUBERNETES_VERSION = "1.30"


def _monitor(script: str) -> tuple[str, str, int, int]:
    """``sentinel monitor <name> <host> <port> <quorum>`` in a Sentinel's script."""
    found = re.search(r"sentinel monitor (\S+) (\S+) (\d+) (\d+)", script)
    assert found, script
    return found.group(1), found.group(2), int(found.group(3)), int(found.group(4))


def _script(service: str) -> str:
    (script,) = SERVICES[service]["command"]
    assert SERVICES[service]["entrypoint"] == ["sh", "-c"]
    return str(script)


# --- compose, read ----------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_the_variant_overrides_only_services_of_the_base_and_adds_the_sentinel_set() -> None:
    added = set(SERVICES) - set(BASE["services"])
    assert added == {*REPLICAS, *SENTINELS}
    assert SERVICES["redis"]["command"][-2:] == ["--appendonly", "yes"], "the master keeps AOF"
    for replica in REPLICAS:
        command = SERVICES[replica]["command"]
        assert command[command.index("--replicaof") + 1 :][:2] == ["redis", "6379"]
        assert command[command.index("--replica-announce-ip") + 1] == replica
        assert command[-2:] == ["--appendonly", "yes"]
        assert "ports" not in SERVICES[replica]
    assert not any("ports" in SERVICES[s] for s in SENTINELS)


@pytest.mark.timeout(10)
def test_every_cancelq_service_reaches_the_three_sentinels_by_name() -> None:
    names = {_monitor(_script(s))[0] for s in SENTINELS}
    assert len(names) == 1
    for service in CANCELQ_SERVICES:
        env = SERVICES[service]["environment"]
        url = parse_sentinel_url(env["CANCELQ_REDIS_URL"])
        assert {host for host, _ in url.nodes} == set(SENTINELS)
        assert {port for _, port in url.nodes} == {26379}
        assert env["CANCELQ_REDIS_SENTINEL_MASTER"] in names
        settings = load_settings(
            redis_url=env["CANCELQ_REDIS_URL"],
            redis_sentinel_master=env["CANCELQ_REDIS_SENTINEL_MASTER"],
        )
        assert settings.redis_sentinel() is not None
        assert "sentinel-1" in SERVICES[service]["depends_on"]


@pytest.mark.timeout(10)
def test_the_sentinels_watch_the_master_with_a_majority_quorum() -> None:
    for sentinel in SENTINELS:
        name, host, port, quorum = _monitor(_script(sentinel))
        assert (host, port) == ("redis", 6379)
        assert quorum == len(SENTINELS) // 2 + 1
        health = SERVICES[sentinel]["healthcheck"]["test"]
        assert health[-3:] == ["sentinel", "ckquorum", name]
        assert "resolve-hostnames yes" in _script(sentinel)


# --- compose, run -----------------------------------------------------------------------------


class Processes:
    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], **env: str) -> None:
        self.running.append(
            subprocess.Popen(
                list(argv),
                env={"PATH": "/usr/local/bin:/usr/bin:/bin", **env},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )

    def stop(self) -> None:
        for process in reversed(self.running):
            end_process(process, signal.SIGTERM, timeout_s=10, group=True)


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    yield started
    started.stop()


def _redis_argv(command: Sequence[str], port: int, ports: dict[str, int], data: Path) -> list[str]:
    """A compose redis-server command, here: a free port on loopback, names swapped."""
    names = {name: "127.0.0.1" for name in ports} | {"6379": str(ports["redis"])}
    swapped = [names.get(arg, arg) for arg in command]
    assert swapped[0] == "redis-server"
    data.mkdir()
    local = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--save", ""]
    return [redis_server_binary(), *swapped[1:], *local]


def _sentinel_script(script: str, port: int, master_port: int, conf: Path) -> str:
    script = script.replace("$$", "$")  # compose's escape of the shell's $
    script = script.replace("/tmp/sentinel.conf", str(conf))
    script = script.replace("port 26379", f"port {port}")
    script = re.sub(r"(sentinel monitor \S+) redis 6379", rf"\1 127.0.0.1 {master_port}", script)
    script = script.replace("--sentinel", "--sentinel --bind 127.0.0.1")
    return script.replace("redis-server ", f"{redis_server_binary()} ")


@pytest.mark.timeout(60)
def test_the_compose_sentinel_set_runs_and_cancelq_reaches_the_master_through_it(
    processes: Processes, tmp_path: Path
) -> None:
    ports = {name: free_port() for name in ("redis", *REPLICAS)}
    for name, port in ports.items():
        processes.start(_redis_argv(SERVICES[name]["command"], port, ports, tmp_path / name))
    sentinel_ports = {name: free_port() for name in SENTINELS}
    for name, port in sentinel_ports.items():
        (tmp_path / name).mkdir()
        script = _sentinel_script(_script(name), port, ports["redis"], tmp_path / name / "s.conf")
        processes.start(["sh", "-c", script], HOSTNAME="127.0.0.1")
    for name, port in sentinel_ports.items():
        health = SERVICES[name]["healthcheck"]["test"][1:]
        argv = [shutil.which(health[0]) or health[0], *health[1:]]
        argv[argv.index("26379")] = str(port)

        def healthy(argv: list[str] = argv) -> bool:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
            return done.stdout.startswith("OK")

        assert wait_until(healthy, 30, interval_s=0.2), name
    env = SERVICES["producer"]["environment"]
    url = env["CANCELQ_REDIS_URL"]
    for name, port in sentinel_ports.items():
        url = url.replace(f"{name}:26379", f"127.0.0.1:{port}")
    settings = load_settings(
        redis_url=url, redis_sentinel_master=env["CANCELQ_REDIS_SENTINEL_MASTER"]
    )
    assert settings.redis_url is not None
    producer = CancelProducer.from_url(settings.redis_url, sentinel=settings.redis_sentinel())
    rid = producer.enqueue(account="main", category="spot", symbol="BTCUSDT", orderId="1")
    assert producer.outcome(rid) is None
    with redis.Redis(port=ports["redis"]) as master:
        assert master.llen("cancelq") == 1, "the master the Sentinels name is the compose master"


# --- k8s overlay ------------------------------------------------------------------------------


def _built() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(OVERLAY)],
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
    ).stdout
    return list(yaml.safe_load_all(out))


@pytest.mark.timeout(60)
def test_the_k8s_overlay_builds_valid_manifests_pointing_cancelq_at_the_sentinels() -> None:
    docs = _built()
    base = yaml.safe_load((REPO_ROOT / "deploy/k8s/kustomization.yaml").read_text())
    assert {d["metadata"]["namespace"] for d in docs} == {base["namespace"]}
    for doc in docs:
        if doc["apiVersion"].startswith(("monitoring.coreos.com", "keda.sh")):
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    data = config["data"]
    assert "@" not in data["CANCELQ_REDIS_URL"], "no password in a ConfigMap"
    (secret,) = [d for d in docs if d["metadata"]["name"] == "cancelq-redis-sentinel"]
    assert "FAKE" in secret["stringData"]["password"]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"cancelq-worker", "cancelq-confirmer"}
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        ref = env["CANCELQ_REDIS_SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "cancelq-redis-sentinel", "key": "password"}, name
        assert [e["configMapRef"]["name"] for e in container["envFrom"]] == ["cancelq-worker"]
    settings = load_settings(
        redis_url=data["CANCELQ_REDIS_URL"],
        redis_sentinel_master=data["CANCELQ_REDIS_SENTINEL_MASTER"],
        redis_sentinel_password=secret["stringData"]["password"],
    )
    sentinel = settings.redis_sentinel()
    assert sentinel is not None
    assert len(parse_sentinel_url(data["CANCELQ_REDIS_URL"]).nodes) >= 3
