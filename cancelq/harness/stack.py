"""The one stack builder: a private Redis, the Bybit simulator, and cancelq worker and confirmer
processes on demand, all on 127.0.0.1, all stopped on exit.

``cancelq demo``, the integration and fault tiers (``tests/support.py``), the monitoring harness
(``monitoring/demo_load.py``) and the benchmarks (``bench/stack.py``, which adds its own worker
sets for the baselines) build on it::

    with Stack(workdir, accounts, worker_env={"CANCELQ_LOG_LEVEL": "WARNING"}) as stack:
        stack.start_worker()
        stack.producer.enqueue(...)

The stack stops only what it started: a Redis given by URL and a simulator passed in are left
running.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from cancelq.harness.accounts import AccountSpec, write_accounts
from cancelq.harness.embedded_redis import RedisServer, TlsFiles, free_port
from cancelq.harness.processes import ConfirmerProcess, ServiceProcess, WorkerProcess
from cancelq.producers.client import CancelProducer
from cancelq.redis_client import SentinelOptions, connect
from cancelq.simulator.testing import SimulatorProcess

#: How long a service gets to start (until its heartbeat says ready).
START_TIMEOUT_S = 60.0


class Stack:
    """Redis + simulator (started by :meth:`start`), and services on demand."""

    def __init__(
        self,
        workdir: Path,
        accounts: Sequence[AccountSpec],
        *,
        redis_server: RedisServer | None = None,
        redis_url: str | None = None,
        sentinel: SentinelOptions | None = None,
        simulator: SimulatorProcess | None = None,
        sim_args: Sequence[str] = (),
        sim_tls: TlsFiles | None = None,
        env: Mapping[str, str] | None = None,
        worker_env: Mapping[str, str] | None = None,
        confirmer_env: Mapping[str, str] | None = None,
        extra_secrets: Sequence[str] = (),
        stop_timeout_s: float = 30.0,
    ) -> None:
        """``accounts``: the accounts file every process reads (written into ``workdir``).

        Redis: ``redis_server`` (started and stopped here; default a fresh :class:`RedisServer`),
        or ``redis_url``, one that runs already (left alone; ``sentinel`` with a ``sentinel://``
        URL). The simulator: started here with
        ``sim_args`` (HTTPS with ``sim_tls``), or ``simulator``, one that runs already and knows
        these accounts (left alone). ``env`` goes to every service, ``worker_env`` and
        ``confirmer_env`` to one kind; the arguments of each start call win over all three.
        """
        self.workdir = workdir
        self.accounts = list(accounts)
        self.accounts_file = write_accounts(workdir / "accounts.toml", self.accounts)
        self._server = None if redis_url else (redis_server or RedisServer())
        self._redis_url = redis_url
        self.sentinel = sentinel
        self._own_sim = simulator is None
        self.sim = simulator or SimulatorProcess(
            accounts_file=self.accounts_file,
            extra_args=sim_args,
            tls=(sim_tls.ca_cert, sim_tls.cert, sim_tls.key) if sim_tls else None,
        )
        self.env = dict(env or {})
        self.worker_defaults = dict(worker_env or {})
        self.confirmer_defaults = dict(confirmer_env or {})
        self.secrets = [s for a in self.accounts for s in a.secrets] + list(extra_secrets)
        self.stop_timeout_s = stop_timeout_s
        self.workers: list[WorkerProcess] = []
        self.confirmers: list[ConfirmerProcess] = []

    # -- the stack itself ---------------------------------------------------------------------

    def start(self) -> Self:
        """Redis, then the simulator; on any failure, whatever started is stopped again."""
        try:
            if self._server is not None:
                self._server.start()
            if self._own_sim:
                self.sim.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Every service (SIGTERM, SIGKILL after ``stop_timeout_s``), the simulator, Redis."""
        with contextlib.ExitStack() as cleanup:
            if self._server is not None:
                cleanup.callback(self._server.close)
            if self._own_sim:
                cleanup.callback(self.sim.stop)
            for service in [*self.confirmers, *self.workers]:
                cleanup.callback(service.stop, self.stop_timeout_s)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def embedded(self) -> bool:
        """Redis is this stack's own (not one given by URL)."""
        return self._server is not None

    @property
    def redis_server(self) -> RedisServer:
        """This stack's own Redis (to stop, kill or restart it)."""
        if self._server is None:
            raise RuntimeError("this stack uses a Redis it did not start")
        return self._server

    @property
    def redis_url(self) -> str:
        return self._redis_url or self.redis_server.url

    @property
    def redis(self) -> redis.Redis:
        """A new client of the stack's Redis, replies as text."""
        return connect(self.redis_url, self.sentinel, decode_responses=True)

    @property
    def producer(self) -> CancelProducer:
        return CancelProducer.from_url(self.redis_url, sentinel=self.sentinel)

    # -- services -----------------------------------------------------------------------------

    def service_env(self, **overrides: str) -> dict[str, str]:
        """What every service of this stack is started with."""
        return {
            "CANCELQ_REDIS_URL": self.redis_url,
            **sentinel_env(self.sentinel),
            "CANCELQ_BYBIT_BASE_URL": self.sim.base_url,
            "CANCELQ_ACCOUNTS_FILE": str(self.accounts_file),
            "CANCELQ_METRICS_HOST": "127.0.0.1",
            **self.env,
            **overrides,
        }

    def worker(self, *celery_args: str, **env: str) -> WorkerProcess:
        """A worker (not started yet; stopped with the stack): /metrics on a free port,
        ``worker-<n>.health`` and ``worker-<n>.log`` in the work directory; ``celery_args`` go
        to ``celery worker``."""
        name = f"worker-{len(self.workers)}"
        own = {
            "CANCELQ_METRICS_PORT": str(free_port()),
            "CANCELQ_HEALTH_FILE": str(self.workdir / f"{name}.health"),
        }
        worker = WorkerProcess(
            self.service_env(**{**own, **self.worker_defaults, **env}),
            self.workdir / f"{name}.log",
            celery_args,
        )
        self.workers.append(worker)
        return worker

    def confirmer(self, name: str = "", **env: str) -> ConfirmerProcess:
        """A confirmer (not started yet; stopped with the stack) following the simulator's
        private stream, /metrics on a free port, ``<name>.health`` and ``<name>.log``."""
        name = name or ("confirmer" if not self.confirmers else f"confirmer-{len(self.confirmers)}")
        own = {
            "CANCELQ_BYBIT_WS_URL": self.sim.ws_url,
            "CANCELQ_CONFIRMER_METRICS_PORT": str(free_port()),
            "CANCELQ_HEALTH_FILE": str(self.workdir / f"{name}.health"),
        }
        confirmer = ConfirmerProcess(
            self.service_env(**{**own, **self.confirmer_defaults, **env}),
            self.workdir / f"{name}.log",
        )
        self.confirmers.append(confirmer)
        return confirmer

    def start_worker(self, *celery_args: str, **env: str) -> WorkerProcess:
        """A worker, started and ready (a worker that does not get ready is killed)."""
        return self.worker(*celery_args, **env).start(START_TIMEOUT_S)

    def start_confirmer(self, name: str = "", **env: str) -> ConfirmerProcess:
        """A confirmer, started and ready (one that does not get ready is killed)."""
        return self.confirmer(name, **env).start(START_TIMEOUT_S)

    def start_together(
        self, services: Iterable[ServiceProcess], timeout_s: float = START_TIMEOUT_S
    ) -> None:
        """Start services side by side (start-up is mostly imports: one core each)."""
        pending = list(services)
        with ThreadPoolExecutor(max_workers=max(len(pending), 1)) as pool:
            for started in [pool.submit(service.start, timeout_s) for service in pending]:
                started.result()

    def worker_logs(self) -> str:
        return "\n".join(w.log_text() for w in self.workers)


def sentinel_env(sentinel: SentinelOptions | None) -> dict[str, str]:
    """The ``CANCELQ_REDIS_SENTINEL_*`` variables a service needs for these options."""
    if sentinel is None:
        return {}
    env = {"CANCELQ_REDIS_SENTINEL_MASTER": sentinel.master}
    if sentinel.password:
        env["CANCELQ_REDIS_SENTINEL_PASSWORD"] = sentinel.password
    if sentinel.tls:
        env["CANCELQ_REDIS_SENTINEL_TLS"] = "true"
    if sentinel.ca_file:
        env["CANCELQ_REDIS_SENTINEL_CA_FILE"] = sentinel.ca_file
    return env
