"""Shared building blocks of the integration and fault tiers: a whole cancelq stack.

Everything is real: a private redis-server on a free port, the simulator as a subprocess over
HTTP, and ``python -m cancelq worker`` processes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from cancelq.harness.accounts import AccountSpec, RsaPair, write_accounts
from cancelq.harness.embedded_redis import RedisServer, free_port
from cancelq.harness.processes import ConfirmerProcess, WorkerProcess
from cancelq.producers.client import CancelProducer
from cancelq.simulator.testing import SimulatorProcess

SECRETS = {"main": "main-secret-2f9c1e77", "page": "page-secret-8d0b4a13"}
KEYS = {"main": "MAINKEY00000001", "rsa": "RSAKEY000000002", "page": "PAGEKEY00000003"}
UIDS = {"main": 1001, "rsa": 1002, "page": 1003}


def test_accounts(pair: RsaPair) -> list[AccountSpec]:
    """The tests' accounts: ``main`` (HMAC, 20/s), ``rsa`` (RSA) and ``page`` (HMAC, the
    cancel-order page's retCode table)."""
    return [
        AccountSpec("main", KEYS["main"], UIDS["main"], SECRETS["main"], rate_limit_per_s=20),
        AccountSpec("rsa", KEYS["rsa"], UIDS["rsa"], rsa=pair),
        AccountSpec("page", KEYS["page"], UIDS["page"], SECRETS["page"], ret_code_table="page"),
    ]


def write_test_accounts(directory: Path, pair: RsaPair) -> Path:
    """One file for both sides: workers read the secrets, the simulator uids and public key."""
    return write_accounts(directory / "accounts.toml", test_accounts(pair))


@dataclass
class Stack:
    redis_server: RedisServer
    sim: SimulatorProcess
    accounts_file: Path
    workdir: Path
    secrets: list[str] = field(repr=False)  # never in test output
    workers: list[WorkerProcess] = field(default_factory=list, repr=False)

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_server.url, decode_responses=True)

    @property
    def producer(self) -> CancelProducer:
        return CancelProducer.from_url(self.redis_server.url)

    def worker_env(self, **overrides: str) -> dict[str, str]:
        n = len(self.workers)
        return {
            "CANCELQ_REDIS_URL": self.redis_server.url,
            "CANCELQ_BYBIT_BASE_URL": self.sim.base_url,
            "CANCELQ_ACCOUNTS_FILE": str(self.accounts_file),
            "CANCELQ_METRICS_PORT": str(free_port()),
            "CANCELQ_METRICS_HOST": "127.0.0.1",
            "CANCELQ_HEALTH_FILE": str(self.workdir / f"worker-{n}.health"),
            "CANCELQ_NOT_FOUND_RECHECK_S": "0.6",
            "CANCELQ_NOT_FOUND_RETRY_S": "0.2",
            "CANCELQ_LOG_FORMAT": "json",
            **overrides,
        }

    def start_worker(self, *celery_args: str, **env: str) -> WorkerProcess:
        log = self.workdir / f"worker-{len(self.workers)}.log"
        worker = WorkerProcess(self.worker_env(**env), log, celery_args)
        self.workers.append(worker)
        return worker.start()

    def place(self, account: str = "main", **order: Any) -> str:
        order.setdefault("category", "spot")
        order.setdefault("symbol", "BTCUSDT")
        order.setdefault("price", "100")
        return self.sim.admin.place_order(account=account, **order)

    def order_status(self, order_id: str) -> str:
        return str(self.sim.admin.order(order_id)["orderStatus"])

    def logs(self) -> str:
        return "\n".join(w.log_text() for w in self.workers)


def cancel(account: str = "main", **fields: Any) -> dict[str, Any]:
    fields.setdefault("category", "spot")
    fields.setdefault("symbol", "BTCUSDT")
    return {"account": account, **fields}


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


def scan_redis(client: redis.Redis) -> Iterator[tuple[str, str]]:
    """Every key and every value (strings, hashes, lists, sets, zsets, streams) as text."""
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        values: list[Any]
        if kind == "string":
            values = [client.get(key)]
        elif kind == "hash":
            values = [f"{k}={v}" for k, v in client.hgetall(key).items()]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            values = [str(entry) for entry in client.xrange(key)]
        else:
            values = []
        yield str(key), "\n".join(str(v) for v in values)


def without(mapping: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k not in names}


def start_confirmer(stack: Stack, **env: str) -> ConfirmerProcess:
    """A ``cancelq confirmer`` on the stack's Redis, simulator (REST and private stream) and
    accounts, its /metrics on a free loopback port; the caller stops it."""
    confirmer = ConfirmerProcess(
        {
            "CANCELQ_REDIS_URL": stack.redis_server.url,
            "CANCELQ_BYBIT_BASE_URL": stack.sim.base_url,
            "CANCELQ_BYBIT_WS_URL": stack.sim.ws_url,
            "CANCELQ_ACCOUNTS_FILE": str(stack.accounts_file),
            "CANCELQ_CONFIRMER_METRICS_PORT": str(free_port()),
            "CANCELQ_METRICS_HOST": "127.0.0.1",
            "CANCELQ_HEALTH_FILE": str(stack.workdir / "confirmer.health"),
            "CANCELQ_LOG_FORMAT": "json",
            **env,
        },
        stack.workdir / "confirmer.log",
    )
    return confirmer.start()  # a service that is not ready is killed by start()
