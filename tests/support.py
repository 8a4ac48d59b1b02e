"""Shared building blocks of the integration and fault tiers: the harness's stack with the
tests' accounts and settings.

Everything is real: a private redis-server on a free port, the simulator as a subprocess over
HTTP, and ``python -m cancelq worker`` processes (``cancelq/harness/stack.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import redis

from cancelq.harness import stack as harness
from cancelq.harness.accounts import AccountSpec, RsaPair, new_rsa_pair

SECRETS = {"main": "main-secret-2f9c1e77", "page": "page-secret-8d0b4a13"}
KEYS = {"main": "MAINKEY00000001", "rsa": "RSAKEY000000002", "page": "PAGEKEY00000003"}
UIDS = {"main": 1001, "rsa": 1002, "page": 1003}
#: What every service of a test stack runs with: JSON logs (tests parse them).
ENV = {"CANCELQ_LOG_FORMAT": "json"}
#: Workers: a not-found re-check window short enough for a test.
WORKER_ENV = {"CANCELQ_NOT_FOUND_RECHECK_S": "0.6", "CANCELQ_NOT_FOUND_RETRY_S": "0.2"}


def suite_accounts(pair: RsaPair) -> list[AccountSpec]:
    """The tests' accounts: ``main`` (HMAC, 20/s), ``rsa`` (RSA) and ``page`` (HMAC, the
    cancel-order page's retCode table)."""
    return [
        AccountSpec("main", KEYS["main"], UIDS["main"], SECRETS["main"], rate_limit_per_s=20),
        AccountSpec("rsa", KEYS["rsa"], UIDS["rsa"], rsa=pair),
        AccountSpec("page", KEYS["page"], UIDS["page"], SECRETS["page"], ret_code_table="page"),
    ]


class Stack(harness.Stack):
    """The harness's stack, with the tests' shorthands (account ``main``, spot, BTCUSDT)."""

    def place(self, account: str = "main", **order: Any) -> str:
        order.setdefault("category", "spot")
        order.setdefault("symbol", "BTCUSDT")
        order.setdefault("price", "100")
        return self.sim.admin.place_order(account=account, **order)

    def order_status(self, order_id: str) -> str:
        return str(self.sim.admin.order(order_id)["orderStatus"])

    def logs(self) -> str:
        return self.worker_logs()


def suite_stack(workdir: Path, accounts: list[AccountSpec] | None = None, **options: Any) -> Stack:
    """A test stack (not started): the tests' accounts (a fresh RSA pair) unless ``accounts``,
    the tests' settings, and any :class:`cancelq.harness.stack.Stack` option."""
    return Stack(
        workdir,
        accounts if accounts is not None else suite_accounts(new_rsa_pair()),
        env=ENV,
        worker_env=WORKER_ENV,
        **options,
    )


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


def run_cli(
    *args: str, env: Mapping[str, str], stdin: str | None = None, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m cancelq ARGS`` as an operator runs it: this process's environment with
    ``env`` over it, output captured as text, the exit code left to the caller."""
    return subprocess.run(
        [sys.executable, "-m", "cancelq", *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def cli(
    stack: harness.Stack,
    *args: str,
    stdin: str | None = None,
    timeout_s: float = 60,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """:func:`run_cli` against ``stack``'s Redis (its URL and Sentinel settings)."""
    redis_env = {"CANCELQ_REDIS_URL": stack.redis_url, **harness.sentinel_env(stack.sentinel)}
    return run_cli(*args, env={**redis_env, **env}, stdin=stdin, timeout_s=timeout_s)
