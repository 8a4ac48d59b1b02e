"""Least privilege: Redis started with the shipped ACL file (``deploy/redis/users.acl``,
rendered by ``deploy/redis/render-acl``), every process connected as its role's user.

Each role does its whole job (a real worker and a confirmer against the simulator, cancels and
a kill enqueued by the producer user, outcomes and confirmations read back, the operator
reading), and Redis refuses no command of theirs (``ACL LOG`` stays empty); the producer and
the operator are refused every write outside their job with NOPERM.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from cancelq.confirmations import Confirmation
from cancelq.eviction import eviction_policy
from cancelq.harness.embedded_redis import RedisServer
from cancelq.keys import Keys
from cancelq.outcomes import Status
from cancelq.producers.client import CancelProducer
from cancelq.worker.pods import PodBeat, unacked_total
from cancelq.worker.rescue import Rescuer
from cancelq.worker.takeover import Takeover
from tests.support import Stack, cancel, run_cli, suite_stack, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "redis" / "users.acl"
RENDER = ROOT / "deploy" / "redis" / "render-acl"
ROLES = ("producer", "worker", "confirmer", "operator")


class Users:
    """The rendered ACL file, each role's password and URL."""

    def __init__(self, workdir: Path) -> None:
        self.passwords = {role: secrets.token_hex(16) for role in ROLES}
        self.file = workdir / "users.acl"
        env = {f"CANCELQ_REDIS_{r.upper()}_PASSWORD": p for r, p in self.passwords.items()}
        subprocess.run(
            ["sh", str(RENDER), str(TEMPLATE), str(self.file)],
            env={**os.environ, **env},
            check=True,
            timeout=10,
        )
        self.port = 0

    def url(self, role: str) -> str:
        return f"redis://{role}:{self.passwords[role]}@127.0.0.1:{self.port}/0"

    def client(self, role: str) -> redis.Redis:
        return redis.Redis.from_url(self.url(role), decode_responses=True)


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Users:
    return Users(tmp_path_factory.mktemp("acl"))


@pytest.fixture(scope="module")
def stack(users: Users, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    server = RedisServer(
        acl_file=users.file, username="operator", password=users.passwords["operator"]
    )
    users.port = server.port
    with suite_stack(
        tmp_path_factory.mktemp("acl-stack"),
        redis_server=server,
        extra_secrets=list(users.passwords.values()),
    ) as stack:
        yield stack


def refusals(users: Users) -> list[dict[str, Any]]:
    """What Redis refused since the last ACL LOG RESET (user, command, context, object)."""
    rows = users.client("operator").execute_command("ACL", "LOG")
    return [dict(zip(row[::2], row[1::2], strict=True)) for row in rows]


def noperm_errors(port: int) -> float:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found = re.search(r'^cancelq_store_errors_total\{kind="noperm"\} (\S+)$', text, re.M)
    assert found
    return float(found.group(1))


def test_the_file_ships_no_password_and_redis_reads_the_rendered_one(users: Users) -> None:
    shipped = TEMPLATE.read_text()
    rendered = users.file.read_text()
    assert all(line.startswith("user ") for line in rendered.splitlines()), "no comments"
    assert not any(p in shipped or p in rendered for p in users.passwords.values())
    assert oct(users.file.stat().st_mode & 0o777) == "0o600"
    assert len(re.findall(r" #[0-9a-f]{64} ", rendered)) == len(ROLES)


def test_every_role_does_its_job_and_redis_refuses_none_of_it(stack: Stack, users: Users) -> None:
    users.client("operator").execute_command("ACL", "LOG", "RESET")  # the operator may
    worker = stack.start_worker(CANCELQ_REDIS_URL=users.url("worker"))
    confirmer = stack.start_confirmer(CANCELQ_REDIS_URL=users.url("confirmer"))
    producer = CancelProducer.from_url(users.url("producer"))
    orders = [stack.place(order_link_id=f"acl-{i}") for i in range(30)]
    rids = producer.enqueue_many([cancel(orderLinkId=f"acl-{i}") for i in range(30)])  # 20/s
    rids.append(producer.enqueue(**cancel(orderLinkId="acl-missing")))
    outcomes = producer.wait_many(rids, timeout_s=30)
    assert [outcomes[rid].status for rid in rids] == [Status.CANCELLED] * 30 + [Status.NOT_FOUND]
    assert {stack.order_status(order) for order in orders} == {"Cancelled"}
    confirmed = producer.wait_confirmations(rids[:3], timeout_s=20)
    assert {c.result for c in confirmed.values()} == {Confirmation.CONFIRMED_CANCELLED}
    kill = producer.kill("main", "spot")
    assert producer.wait(kill, 20).status is Status.KILLED
    users.client("producer").lpush("cancelq", "not a message")  # becomes a dead letter
    operator = users.client("operator")
    assert wait_until(lambda: operator.xlen(Keys().dead_letters()) == 1, 10)
    # the operator reads everything
    keys = set(operator.scan_iter("cancelq:*", count=1000))
    assert Keys().outcome(rids[0]) in keys
    assert operator.get(Keys().outcome(rids[0])) is not None
    assert operator.info("memory")["used_memory"] > 0
    assert operator.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert noperm_errors(worker.metrics_port) == 0
    assert worker.stop() == 0  # SIGTERM: kombu hands back what it holds
    assert confirmer.stop() == 0  # leases released
    assert refusals(users) == [], "Redis refused a command a role needs"
    logs = worker.log_text() + confirmer.log_text()
    assert "could not check" not in logs
    assert not any(p in logs for p in users.passwords.values())


WRITES: list[tuple[str, Callable[[redis.Redis], object]]] = [
    ("DEL the queue", lambda r: r.delete("cancelq")),
    ("LTRIM the queue", lambda r: r.ltrim("cancelq", 0, 0)),
    ("RPOP the queue", lambda r: r.rpop("cancelq")),
    ("read the queue", lambda r: r.lrange("cancelq", 0, -1)),
    ("write an outcome", lambda r: r.set("cancelq:outcome:other", "{}")),
    ("delete an outcome", lambda r: r.delete("cancelq:outcome:other")),
    ("write a claim", lambda r: r.hset("cancelq:claim:main:spot:x", "owner", "me")),
    ("park in a lane", lambda r: r.zadd("cancelq:lane:main:spot", {"x": 1})),
    ("spend a lane's budget", lambda r: r.zadd("cancelq:lane:main:spot:log", {"x": 1})),
    ("remove an outbox entry", lambda r: r.zrem("cancelq:outbox", "x")),
    ("kombu's unacked hash", lambda r: r.hdel("cancelq:unacked:pod-1", "x")),
    ("FLUSHALL", lambda r: r.flushall()),
    ("FLUSHDB", lambda r: r.flushdb()),
    ("CONFIG SET", lambda r: r.config_set("maxmemory-policy", "allkeys-lru")),
    ("CONFIG GET", lambda r: r.config_get("maxmemory-policy")),
    ("SCRIPT FLUSH", lambda r: r.script_flush()),
    ("EVAL", lambda r: r.eval("return redis.call('DEL', KEYS[1])", 1, "cancelq")),
    ("KEYS", lambda r: r.keys("*")),
    ("SHUTDOWN", lambda r: r.execute_command("SHUTDOWN", "NOSAVE")),
    ("ACL SETUSER", lambda r: r.acl_setuser("producer", enabled=True, commands=["+@all"])),
    ("PUBLISH", lambda r: r.publish("anything", "x")),
]


@pytest.mark.parametrize(("what", "write"), WRITES, ids=[w for w, _ in WRITES])
def test_the_producer_is_refused_anything_but_its_job(
    stack: Stack, users: Users, what: str, write: Callable[[redis.Redis], object]
) -> None:
    with pytest.raises(redis.exceptions.NoPermissionError):
        write(users.client("producer"))


def test_a_producer_transaction_holding_a_foreign_write_is_refused_whole(
    stack: Stack, users: Users
) -> None:
    client = users.client("producer")
    with pytest.raises(redis.exceptions.NoPermissionError), client.pipeline() as pipe:
        pipe.lpush("cancelq", "garbage").delete("cancelq:outbox").execute()
    assert users.client("operator").llen("cancelq") == 0, "nothing of it was written"


OPERATOR_WRITES = [w for w in WRITES if w[0] not in ("read the queue", "CONFIG GET", "KEYS")]


@pytest.mark.parametrize(("what", "write"), OPERATOR_WRITES, ids=[w for w, _ in OPERATOR_WRITES])
def test_the_operator_only_reads(
    stack: Stack, users: Users, what: str, write: Callable[[redis.Redis], object]
) -> None:
    with pytest.raises(redis.exceptions.NoPermissionError):
        write(users.client("operator"))


def test_a_role_without_config_gets_a_warning_not_a_refusal(
    users: Users, stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="cancelq.eviction"):
        assert eviction_policy(users.client("producer")) is None
    assert "could not check Redis's maxmemory-policy (NoPermissionError" in caplog.text


def test_the_workers_recovery_paths_run_as_the_worker_user(stack: Stack, users: Users) -> None:
    """What the end-to-end run rarely reaches: a dead pod's messages handed back (takeover.lua,
    kombu's shared hash of older workers too), a lost message pushed again from the outbox
    (rescue.lua), the pod heartbeat, the queue gauges."""
    users.client("operator").execute_command("ACL", "LOG", "RESET")
    worker = redis.Redis.from_url(users.url("worker"))
    keys = Keys()
    worker.zadd(keys.pods(), {"dead-pod": 1})
    worker.hset(keys.pod_unacked("dead-pod"), "t1", json.dumps([{"properties": {}}, "", "cancelq"]))
    worker.zadd(keys.pod_unacked_index("dead-pod"), {"t1": 1})
    worker.hset(keys.unacked, "t0", json.dumps([{"properties": {}}, "", "cancelq"]))
    worker.zadd(keys.unacked_index, {"t0": 1})
    swept = Takeover(
        worker, keys, me="me", queues=("cancelq", "cancelq.kill"), visibility_timeout_s=0.001
    ).sweep()
    assert swept.restored == 1
    assert swept.legacy == 1
    producer = users.client("producer")  # an outbox entry whose message the broker lost
    message = json.dumps({"headers": {"id": "lost-1"}})
    producer.zadd(keys.outbox(), {"lost-1": 1})
    producer.hset(keys.outbox_messages(), "lost-1", message)
    assert Rescuer(worker, keys, after_s=0.001).sweep().rescued == 1
    assert PodBeat(worker, keys, "me", every_s=0.5, ttl_s=2).beat()
    assert unacked_total(worker, keys) == 0
    assert refusals(users) == [], "Redis refused a command of the worker's recovery paths"
    worker.delete("cancelq", "cancelq.kill", keys.outbox(), keys.outbox_messages(), keys.pods())


def test_render_acl_refuses_a_missing_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANCELQ_REDIS_")}
    env.update({f"CANCELQ_REDIS_{r.upper()}_PASSWORD": "x" for r in ROLES if r != "worker"})
    result = subprocess.run(
        ["sh", str(RENDER), str(TEMPLATE), str(tmp_path / "users.acl"), "echo", "started"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    assert result.returncode == 2
    assert "CANCELQ_REDIS_WORKER_PASSWORD is not set" in result.stderr
    assert "started" not in result.stdout, "the server is not started without every user"


def test_render_acl_keeps_the_replication_users_only_with_their_passwords(tmp_path: Path) -> None:
    """``monitor`` (the Sentinels) and ``replication`` (replicas) exist only where their
    passwords are set (docker-compose.sentinel.yml); docker-compose.yml sets neither."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANCELQ_REDIS_")}
    env.update({f"CANCELQ_REDIS_{r.upper()}_PASSWORD": f"pw-{r}" for r in ROLES})

    def rendered(**extra: str) -> dict[str, str]:
        out = tmp_path / f"users-{len(extra)}.acl"
        subprocess.run(
            ["sh", str(RENDER), str(TEMPLATE), str(out)],
            env={**env, **extra},
            check=True,
            timeout=10,
        )
        text = out.read_text()
        assert "@" not in text.replace("-@all", "").replace("+@read", ""), "a placeholder left"
        return {line.split()[1]: line for line in text.splitlines()}

    assert set(rendered()) == {"default", *ROLES}
    extra = {"CANCELQ_REDIS_MONITOR_PASSWORD": "pw-m", "CANCELQ_REDIS_REPLICATION_PASSWORD": "pw-r"}
    users = rendered(**extra)
    assert set(users) == {"default", *ROLES, "monitor", "replication"}
    assert "pw-m" not in users["monitor"]
    assert f"#{hashlib.sha256(b'pw-m').hexdigest()}" in users["monitor"].split()
    assert f"#{hashlib.sha256(b'pw-r').hexdigest()}" in users["replication"].split()


def test_the_operators_console_runs_as_the_shipped_roles(stack: Stack, users: Users) -> None:
    """`cancelq top` as the read-only operator; `halt`/`resume` (they write cancelq's state)
    as the worker user, whose resume wakes the dispatchers on the one channel it may use."""
    users.client("operator").execute_command("ACL", "LOG", "RESET")
    worker = redis.Redis.from_url(users.url("worker"))
    wake = worker.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    wake.subscribe(Keys().lanes_wake())
    for role, argv in (
        ("worker", ["halt", "main", "--reason", "acl drill", "--by", "ops@test"]),
        ("operator", ["top", "--once"]),
        ("worker", ["resume", "main", "--reason", "acl drill over", "--by", "ops@test"]),
    ):
        done = run_cli(
            *argv, env={"COLUMNS": "200", "CANCELQ_REDIS_URL": users.url(role)}, timeout_s=30
        )
        assert done.returncode == 0, f"{argv[0]} as {role}: {done.stderr[-2000:]}"
        assert users.passwords[role] not in done.stdout + done.stderr
        if argv[0] == "top":
            assert "HALTED" in done.stdout, done.stdout
    deadline = time.monotonic() + 5
    while (message := wake.get_message(timeout=0.5)) is None and time.monotonic() < deadline:
        pass
    assert message is not None, "the resume woke no dispatcher"
    wake.close()
    assert refusals(users) == [], "Redis refused a command of the operator's console"
