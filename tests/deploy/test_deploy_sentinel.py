"""The Sentinel variants: ``docker-compose.sentinel.yml`` (an override of docker-compose.yml)
and ``deploy/k8s-sentinel`` (a kustomize overlay of deploy/k8s).

Both are read as YAML and checked against each other and cancelq's settings; then what the
compose files name is run here, without Docker, as ``docker compose -f docker-compose.yml -f
docker-compose.sentinel.yml`` would (the files merged, ``tests/deploy/compose.py``, every
variable set): each data node's entrypoint (``render-acl`` writing the users) and redis-server
command, each Sentinel's own shell script (which writes the sentinel.conf it runs), with
Docker's names swapped for 127.0.0.1 and free ports, until the compose healthchecks pass; then
cancelq's producer and worker, configured with the compose environment (the same swaps), reach
the master through those Sentinels as their own users, and the master is SIGKILLed. The
overlay is built with ``kubectl kustomize``, validated against the Kubernetes schemas, and
its environment loaded as cancelq's settings.
"""

from __future__ import annotations

import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import redis
import yaml

from cancelq.errors import StoreError
from cancelq.harness.embedded_redis import free_port, redis_server_binary
from cancelq.harness.processes import end_process
from cancelq.producers.client import CancelProducer
from cancelq.redis_client import SentinelOptions, connect, parse_sentinel_url
from cancelq.settings import load_settings
from tests.deploy import compose
from tests.support import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
VARIANT = yaml.safe_load((REPO_ROOT / "docker-compose.sentinel.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = VARIANT["services"]
#: What ``docker compose -f docker-compose.yml -f docker-compose.sentinel.yml`` runs.
MERGED: dict[str, dict[str, Any]] = compose.load(
    REPO_ROOT / "docker-compose.yml", REPO_ROOT / "docker-compose.sentinel.yml"
)["services"]
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
REPLICAS = ("redis-replica-1", "redis-replica-2")
DATA_NODES = ("redis", *REPLICAS)
CANCELQ_SERVICES = ("worker", "confirmer", "producer")
ROLE_OF = {"worker": "worker", "confirmer": "confirmer", "producer": "producer"}
#: Every user of deploy/redis/users.acl: cancelq's roles and replication's own two.
USERS = ("producer", "worker", "confirmer", "operator", "monitor", "replication")
#: The Sentinels' commands on a data node (Redis docs, "Sentinel and Redis ACL").
SENTINEL_COMMANDS = [
    *("+multi", "+slaveof", "+ping", "+exec", "+subscribe", "+config|rewrite", "+role"),
    *("+publish", "+info", "+client|setname", "+client|kill", "+script|kill"),
]
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


def _variable(name: str) -> str:
    return f"${{{name}:?set {name}}}"


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


# --- compose, read ----------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_the_variant_overrides_only_services_of_the_base_and_adds_the_sentinel_set() -> None:
    added = set(SERVICES) - set(BASE["services"])
    assert added == {*REPLICAS, *SENTINELS}
    for replica in REPLICAS:
        command = SERVICES[replica]["command"]
        assert command[command.index("--replicaof") + 1 :][:2] == ["redis", "6379"]
        assert _option(command, "--replica-announce-ip") == replica
        assert "ports" not in SERVICES[replica]
    assert not any("ports" in SERVICES[s] for s in SENTINELS)


@pytest.mark.timeout(10)
def test_every_data_node_runs_as_the_base_master_with_its_users_and_replicates_as_one() -> None:
    base = BASE["services"]["redis"]
    password = _variable("CANCELQ_REDIS_REPLICATION_PASSWORD")
    for node in DATA_NODES:
        service = MERGED[node]
        assert service["entrypoint"] == base["entrypoint"], node
        assert service["image"] == base["image"]
        command = service["command"]
        for option in ("--aclfile", "--maxmemory-policy", "--appendonly"):
            assert _option(command, option) == _option(base["command"], option), (node, option)
        assert (_option(command, "--masteruser"), _option(command, "--masterauth")) == (
            "replication",
            password,
        ), f"{node} may be demoted and must replicate"
        for user in USERS:
            variable = f"CANCELQ_REDIS_{user.upper()}_PASSWORD"
            assert service["environment"][variable] == _variable(variable), (node, variable)
        mounts = {v for v in service["volumes"] if v.startswith("./")}
        assert mounts == {v for v in base["volumes"] if v.startswith("./")}, node
        assert service["healthcheck"]["test"] == base["healthcheck"]["test"], node
        assert any(v.endswith(":/data") and not v.startswith(".") for v in service["volumes"])
    data = {v.split(":")[0] for node in DATA_NODES for v in MERGED[node]["volumes"]}
    assert len([v for v in data if not v.startswith(".")]) == len(DATA_NODES), "one each"


@pytest.mark.timeout(10)
def test_the_acl_file_grants_the_sentinels_and_the_replicas_what_the_redis_docs_name() -> None:
    lines = (REPO_ROOT / "deploy/redis/users.acl").read_text().splitlines()
    users = {line.split()[1]: line.split() for line in lines if line.startswith("user ")}
    assert set(users) == {"default", *USERS}
    monitor, replication = users["monitor"], users["replication"]
    assert monitor[2:4] == ["on", "@MONITOR_PASSWORD_SHA256@"]
    assert replication[2:4] == ["on", "@REPLICATION_PASSWORD_SHA256@"]
    channels = ["resetkeys", "resetchannels", "&__sentinel__:hello", "-@all"]
    assert monitor[4:] == [*channels, *SENTINEL_COMMANDS]
    assert replication[4:] == [
        "resetkeys",
        "resetchannels",
        "-@all",
        "+psync",
        "+replconf",
        "+ping",
    ]


@pytest.mark.timeout(10)
def test_the_header_names_every_variable_the_variant_needs() -> None:
    text = (REPO_ROOT / "docker-compose.sentinel.yml").read_text()
    needed = set(re.findall(r"\$\{(\w+):\?", (REPO_ROOT / "docker-compose.yml").read_text()))
    needed |= set(re.findall(r"\$\{(\w+):\?", text))
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    command = header[: header.index("docker compose -f")]
    assert needed == set(re.findall(r"(\w+)=\.\.\.", command))


@pytest.mark.timeout(10)
def test_every_cancelq_service_reaches_the_three_sentinels_as_its_roles_user() -> None:
    names = {_monitor(_script(s))[0] for s in SENTINELS}
    assert len(names) == 1
    variables = {f"CANCELQ_REDIS_{u.upper()}_PASSWORD": f"pw-of-{u}" for u in USERS}
    for service in CANCELQ_SERVICES:
        env = compose.interpolated(SERVICES[service]["environment"], variables)
        url = parse_sentinel_url(env["CANCELQ_REDIS_URL"])
        assert {host for host, _ in url.nodes} == set(SENTINELS)
        assert {port for _, port in url.nodes} == {26379}
        assert (url.username, url.password) == (ROLE_OF[service], f"pw-of-{ROLE_OF[service]}")
        assert env["CANCELQ_REDIS_SENTINEL_MASTER"] in names
        settings = load_settings(
            redis_url=env["CANCELQ_REDIS_URL"],
            redis_sentinel_master=env["CANCELQ_REDIS_SENTINEL_MASTER"],
        )
        assert settings.redis_sentinel() is not None
        assert "sentinel-1" in SERVICES[service]["depends_on"]


@pytest.mark.timeout(10)
def test_the_sentinels_watch_the_master_with_a_majority_quorum_as_the_monitor_user() -> None:
    for sentinel in SENTINELS:
        script = _script(sentinel)
        name, host, port, quorum = _monitor(script)
        assert (host, port) == ("redis", 6379)
        assert quorum == len(SENTINELS) // 2 + 1
        health = SERVICES[sentinel]["healthcheck"]["test"]
        assert health[-3:] == ["sentinel", "ckquorum", name]
        assert "resolve-hostnames yes" in script
        assert f"sentinel auth-user {name} monitor\n" in script
        assert f"sentinel auth-pass {name} $$CANCELQ_REDIS_MONITOR_PASSWORD\n" in script
        variable = "CANCELQ_REDIS_MONITOR_PASSWORD"
        assert SERVICES[sentinel]["environment"] == {variable: _variable(variable)}


# --- compose, run -----------------------------------------------------------------------------


class Processes:
    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], **env: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            list(argv),
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.running.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.running):
            end_process(process, signal.SIGTERM, timeout_s=10, group=True)


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    yield started
    started.stop()


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """A service's bind mounts: container path -> the checkout's file."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            mounts[target] = str(REPO_ROOT / source)
    return mounts


def _data_node_argv(name: str, port: int, ports: dict[str, int], workdir: Path) -> list[str]:
    """A data node's entrypoint + command as compose runs it (render-acl, then redis-server),
    here: the mounted files from the checkout, /tmp in the test's directory, a free port on
    loopback, Docker's names for 127.0.0.1. The image's docker-entrypoint.sh (it only drops
    root, then runs its arguments) is ``env``."""
    service = MERGED[name]
    argv = [*service["entrypoint"], *service["command"]]
    swaps = {
        **_mounts(service),
        "/tmp/users.acl": str(workdir / "users.acl"),
        "docker-entrypoint.sh": "env",
        "redis-server": redis_server_binary(),
        **{node: "127.0.0.1" for node in ports},
        "6379": str(ports["redis"]),
    }
    (workdir / "data").mkdir(parents=True)
    local = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir / "data")]
    return [swaps.get(arg, arg) for arg in argv] + [*local, "--save", ""]


def _sentinel_script(script: str, port: int, master_port: int, conf: Path) -> str:
    script = script.replace("/tmp/sentinel.conf", str(conf))
    script = script.replace("port 26379", f"port {port}")
    script = re.sub(r"(sentinel monitor \S+) redis 6379", rf"\1 127.0.0.1 {master_port}", script)
    script = script.replace("--sentinel", "--sentinel --bind 127.0.0.1")
    return script.replace("redis-server ", f"{redis_server_binary()} ")


def _env(name: str, variables: dict[str, str]) -> dict[str, str]:
    return {
        k: str(v) for k, v in compose.interpolated(MERGED[name]["environment"], variables).items()
    }


def _healthy(argv: list[str], env: dict[str, str], expect: str) -> bool:
    done = subprocess.run(
        argv,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return done.returncode == 0 and done.stdout.startswith(expect)


def _master_state(port: int) -> dict[str, str]:
    with redis.Redis(port=port, decode_responses=True) as sentinel:
        reply = sentinel.execute_command("SENTINEL", "MASTER", "mymaster")
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _watching(port: int) -> bool:
    """The Sentinel sees the master up (no s_down), both replicas and the other Sentinels."""
    state = _master_state(port)
    return (
        state["flags"].split(",") == ["master"]
        and state["num-slaves"] == str(len(REPLICAS))
        and state["num-other-sentinels"] == str(len(SENTINELS) - 1)
    )


class ComposeSentinelSet:
    """The variant's data nodes and Sentinels started as compose starts them, every variable
    set (a random password per user), until their compose healthchecks pass."""

    def __init__(self, processes: Processes, workdir: Path) -> None:
        self.passwords = {user: secrets.token_hex(12) for user in USERS}
        self.variables = {
            f"CANCELQ_REDIS_{u.upper()}_PASSWORD": p for u, p in self.passwords.items()
        }
        self.variables["SIMULATOR_ADMIN_TOKEN"] = "not-used-here"  # the load generator's
        self.ports = {name: free_port() for name in DATA_NODES}
        self.sentinel_ports = {name: free_port() for name in SENTINELS}
        self.nodes = {name: self._data_node(processes, name, workdir) for name in DATA_NODES}
        for name, port in self.sentinel_ports.items():
            (workdir / name).mkdir()
            script = compose.interpolate(_script(name), self.variables)
            script = _sentinel_script(script, port, self.ports["redis"], workdir / name / "s.conf")
            processes.start(["sh", "-c", script], HOSTNAME="127.0.0.1", **self.env(name))
        for name, port in self.sentinel_ports.items():
            health = SERVICES[name]["healthcheck"]["test"][1:]
            argv = [shutil.which(health[0]) or health[0], *health[1:]]
            argv[argv.index("26379")] = str(port)
            assert wait_until(lambda a=argv: _healthy(a, {}, "OK"), 30, interval_s=0.2), name

    def env(self, service: str) -> dict[str, str]:
        environment = compose.interpolated(MERGED[service]["environment"], self.variables)
        return {key: str(value) for key, value in environment.items()}

    def _data_node(self, processes: Processes, name: str, workdir: Path) -> subprocess.Popen[bytes]:
        argv = _data_node_argv(name, self.ports[name], self.ports, workdir / name)
        process = processes.start(compose.interpolated(argv, self.variables), **self.env(name))
        check = compose.interpolate(MERGED[name]["healthcheck"]["test"][1], self.variables)
        check = ["sh", "-c", check.replace("redis-cli ", f"redis-cli -p {self.ports[name]} ")]
        assert wait_until(lambda: _healthy(check, self.env(name), ""), 20, interval_s=0.1), name
        return process

    def through_sentinels(self, service: str) -> tuple[str, SentinelOptions]:
        """The service's URL and Sentinel options, as cancelq's settings read them."""
        env = self.env(service)
        url = env["CANCELQ_REDIS_URL"]
        for name, port in self.sentinel_ports.items():
            url = url.replace(f"{name}:26379", f"127.0.0.1:{port}")
        settings = load_settings(
            redis_url=url, redis_sentinel_master=env["CANCELQ_REDIS_SENTINEL_MASTER"]
        )
        sentinel = settings.redis_sentinel()
        assert settings.redis_url is not None
        assert sentinel is not None
        return settings.redis_url, sentinel

    def operator(self, node: str) -> redis.Redis:
        password = self.passwords["operator"]
        port = self.ports[node]
        return redis.Redis(port=port, username="operator", password=password, decode_responses=True)

    def refused(self) -> dict[str, list[Any]]:
        """ACL LOG of every data node still running: what Redis refused, by node."""
        logs = {}
        for name in DATA_NODES:
            if self.nodes[name].poll() is None:
                with self.operator(name) as client:
                    logs[name] = client.execute_command("ACL", "LOG")
        return {name: log for name, log in logs.items() if log}

    def master(self) -> str:
        """The data node the first Sentinel names the master."""
        with redis.Redis(port=self.sentinel_ports["sentinel-1"], decode_responses=True) as sentinel:
            _, port = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
        (name,) = [n for n in DATA_NODES if self.ports[n] == int(port)]
        return name


def _enqueued(producer: CancelProducer, order_id: str) -> bool:
    try:
        producer.enqueue(account="main", category="spot", symbol="BTCUSDT", orderId=order_id)
    except StoreError:  # during the failover, until the clients follow it
        return False
    return True


@pytest.mark.timeout(60)
def test_the_compose_sentinel_set_runs_with_every_user_and_fails_over(
    processes: Processes, tmp_path: Path
) -> None:
    """The variant as compose runs it: the data nodes' users, the Sentinels watching as
    "monitor", the replicas replicating as "replication", cancelq's producer and worker each as
    its own user through the Sentinels; then the master SIGKILLed and the promoted replica
    serving the same users, with Sentinel's shipped down-after (5 s)."""
    cluster = ComposeSentinelSet(processes, tmp_path)
    for port in cluster.sentinel_ports.values():
        assert wait_until(lambda p=port: _watching(p), 20, interval_s=0.2), _master_state(port)
    assert cluster.master() == "redis", "the master the Sentinels name is the compose master"
    producer_url, producer_sentinel = cluster.through_sentinels("producer")
    producer = CancelProducer.from_url(producer_url, sentinel=producer_sentinel)
    rid = producer.enqueue(account="main", category="spot", symbol="BTCUSDT", orderId="1")
    assert producer.outcome(rid) is None
    with connect(*cluster.through_sentinels("worker")) as worker:
        assert worker.llen("cancelq") == 1, "the worker's user reads what the producer's wrote"
    for node in DATA_NODES:
        with cluster.operator(node) as client:
            assert wait_until(lambda c=client: c.llen("cancelq") == 1, 10, 0.1), node
    assert cluster.refused() == {}

    killed_at = time.monotonic()
    cluster.nodes["redis"].send_signal(signal.SIGKILL)
    cluster.nodes["redis"].wait(timeout=10)
    assert wait_until(lambda: cluster.master() != "redis", 30, interval_s=0.2), "no failover"
    failover_s = time.monotonic() - killed_at
    promoted = cluster.master()
    assert wait_until(lambda: _enqueued(producer, "2"), 20, interval_s=0.2), "not followed"
    (other,) = [n for n in REPLICAS if n != promoted]
    with cluster.operator(promoted) as client:
        assert client.llen("cancelq") == 2, "the promoted replica holds both enqueues"
        replicating = wait_until(
            lambda: client.info("replication")["connected_slaves"] == 1, 20, 0.2
        )
        assert replicating, f"{other} does not replicate from the promoted {promoted}"
    with cluster.operator(other) as client:
        assert wait_until(lambda: client.llen("cancelq") == 2, 10, 0.1), other
    assert cluster.refused() == {}
    assert failover_s < 20, failover_s


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
