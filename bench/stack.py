"""The benchmark stack: the harness's (one private Redis, one simulator over HTTPS) with worker
sets of every system on demand, and standby sets frozen until their turn.

Everything binds 127.0.0.1. Workers of every system (cancelq and the baselines) read the same
accounts file and consume the same Redis list (``cancelq``), so one producer feeds them all and
one reader reads their outcomes (``cancelq:outcome:<requestId>``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import psutil
import redis

from cancelq.harness.accounts import AccountSpec, write_accounts
from cancelq.harness.embedded_redis import RedisServer
from cancelq.harness.processes import kill_process
from cancelq.harness.stack import Stack as HarnessStack
from cancelq.harness.tls import make_tls_files
from cancelq.heartbeat import read_heartbeat

#: Systems a run can start; each but cancelq is a tiny Celery app in ``bench/baselines``.
SYSTEMS = ("cancelq", "naive", "pybit", "floor", "sleeper")
READY_TIMEOUT_S = 60.0
#: Readiness poll interval: start-up is ~1 s of CPU, so a 50 ms poll wasted up to 5 % of it.
READY_POLL_S = 0.02
UNBOUND_LIMIT = 1_000_000
#: Redis databases of standby sets; database 0 is the harness's and every other set's.
STANDBY_DBS = range(1, 16)


def make_keys(
    prefix: str,
    count: int,
    uid_base: int,
    *,
    rate_limit_per_s: float = 20.0,
    batch_counts_items: bool = True,
) -> list[AccountSpec]:
    """``count`` HMAC accounts ``<prefix>0000``...: one API key each, for both sides."""
    return [
        AccountSpec(
            alias=f"{prefix}{i:04d}",
            api_key=f"{prefix.upper()}KEY{i:06d}",
            uid=uid_base + i,
            api_secret=f"{prefix}-secret-{i:06d}",
            rate_limit_per_s=rate_limit_per_s,
            batch_counts_items=batch_counts_items,
        )
        for i in range(count)
    ]


@dataclass(frozen=True)
class SetSpec:
    """What ``Stack.workers`` is called with: a standby set is adopted by an equal spec."""

    system: str
    count: int
    pool_args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, system: str, count: int, pool_args: Sequence[str], **env: str) -> SetSpec:
        return cls(system, count, tuple(pool_args), tuple(sorted(env.items())))


@dataclass
class _Standby:
    ws: WorkerSet
    db: int
    frozen: bool = False


def _stopped(proc: psutil.Process) -> bool:
    try:
        return proc.status() in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return True


def _dead(proc: psutil.Process) -> bool:
    """Gone, or a zombie: a killed pool child waits for its reaper, but runs no more."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


class WorkerSet:
    """N worker processes of one system, started in parallel, stopped together."""

    def __init__(
        self,
        system: str,
        count: int,
        pool_args: Sequence[str],
        *,
        env: Mapping[str, str],
        workdir: Path,
        tag: str,
    ) -> None:
        self.system = system
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ready_files: list[Path] = []
        self.logs: list[Path] = []
        for i in range(count):
            ready = workdir / f"{tag}-{i}.ready"
            ready.unlink(missing_ok=True)
            log = workdir / f"{tag}-{i}.log"
            proc_env = {
                **os.environ,
                **env,
                "CANCELQ_HEALTH_FILE": str(ready),
                "BENCH_READY_FILE": str(ready),
            }
            if system == "cancelq":
                argv = [sys.executable, "-m", "cancelq", "worker", *pool_args]
            else:
                argv = [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    f"bench.baselines.{system}",
                    "worker",
                    "--queues",
                    "cancelq",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "--loglevel",
                    "WARNING",
                    *pool_args,
                ]
            with log.open("ab") as out:
                self.procs.append(
                    subprocess.Popen(
                        argv,
                        env=proc_env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        cwd=str(Path(__file__).resolve().parent.parent),
                    )
                )
            self.ready_files.append(ready)
            self.logs.append(log)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> WorkerSet:
        deadline = time.monotonic() + timeout_s
        pending = list(range(len(self.procs)))
        while pending and time.monotonic() < deadline:
            pending = [i for i in pending if not self._ready(i)]
            for i in pending:
                if self.procs[i].poll() is not None:
                    raise RuntimeError(f"{self.system} worker exited:\n{self.log_tail(i)}")
            time.sleep(READY_POLL_S)
        if pending:
            raise TimeoutError(f"{self.system} worker not ready:\n{self.log_tail(pending[0])}")
        return self

    def _ready(self, i: int) -> bool:
        if self.system == "cancelq":
            beat = read_heartbeat(self.ready_files[i])
            return beat is not None and beat[1] and beat[0] < 5
        return self.ready_files[i].exists()

    def log_tail(self, i: int, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.logs[i].read_text(errors="replace")[-chars:]
        return ""

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def tree(self) -> list[psutil.Process]:
        """Every process of the set: the worker mains and their pool children."""
        out: list[psutil.Process] = []
        for pid in self.pids:
            with contextlib.suppress(psutil.Error):
                main = psutil.Process(pid)
                out += [main, *main.children(recursive=True)]
        return out

    def cpu_s(self) -> float:
        total = 0.0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
        return total

    def rss_mb(self) -> float:
        total = 0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total / 2**20

    def stop(self, timeout_s: float = 10.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                kill_process(proc, group=True)

    def signal_all(self, sig: signal.Signals) -> None:
        """``sig`` to every process group of the set (the mains and their pool children)."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)

    def wait_stopped(self, timeout_s: float = 2.0) -> None:
        """Until every process of the set is stopped (SIGSTOP is not instantaneous: a process
        runs on until the kernel delivers it), so nothing of it runs into a measurement."""
        deadline = time.monotonic() + timeout_s
        tree = self.tree()
        while time.monotonic() < deadline and not all(_stopped(p) for p in tree):
            time.sleep(0.005)

    def kill(self, timeout_s: float = 5.0) -> None:
        """SIGKILL every process group of the set now and reap the mains.

        For a set whose run is over: a graceful stop costs 1-2 s per set (shutdown grace,
        pool teardown) and nothing is measured during it; what a kill leaves behind in Redis
        is flushed by ``Stack.workers`` and the simulator is reset by the next phase.
        Returns once every process of the tree is dead (a zombie at most), so nothing of
        this set runs into the next phase.
        """
        tree = self.tree()
        self.signal_all(signal.SIGKILL)
        for proc in self.procs:
            kill_process(proc, group=True)
        deadline = time.monotonic() + timeout_s
        while not all(_dead(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.005)

    def __enter__(self) -> WorkerSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Stack:
    """Private Redis + simulator; ``workers(...)`` starts a system's processes, and
    ``standby(...)`` starts baseline sets ahead of their turn."""

    def __init__(
        self,
        workdir: Path,
        keys: Sequence[AccountSpec],
        sim_args: Sequence[str] = (),
        *,
        worker_keys: Sequence[AccountSpec] | None = None,
        tls: bool = True,
    ) -> None:
        """``keys``: every account the simulator knows. ``worker_keys``: the accounts worker
        sets are given by default (all of ``keys`` when None); a set that needs every account
        passes ``CANCELQ_ACCOUNTS_FILE=str(stack.accounts_file)``. Why: cancelq spends ~0.3 s
        of CPU per process at start on 1,000 accounts, and only one scenario uses them."""
        self.workdir = workdir
        self.keys = {k.alias: k for k in keys}
        # HTTPS, as Bybit: a client without keep-alive pays a TLS handshake per request
        files = make_tls_files(workdir, "simulator") if tls else None
        self.ca_file = str(files.ca_cert) if files else None
        self.base = HarnessStack(
            workdir,
            keys,
            sim_tls=files,
            sim_args=[
                "--ip-limit",
                "1000000000",
                "--record-size",
                "400000",
                "--log-level",
                "ERROR",
                *sim_args,
            ],
        )
        self.accounts_file = self.base.accounts_file
        self.worker_accounts_file = (
            self.accounts_file
            if worker_keys is None
            else write_accounts(workdir / "worker-accounts.toml", worker_keys)
        )
        self.sim = self.base.sim
        self._sets = 0
        self._standby: dict[SetSpec, _Standby] = {}
        self._clients: dict[int, redis.Redis] = {}
        self.redis: redis.Redis = redis.Redis()

    @property
    def redis_server(self) -> RedisServer:
        return self.base.redis_server

    def start(self) -> Stack:
        self.base.start()
        self.redis = self._client(0)
        return self

    def close(self) -> None:
        self._drop_standby()
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self.base.close()

    def _db_url(self, db: int) -> str:
        return urlunsplit(urlsplit(self.redis_server.url)._replace(path=f"/{db}"))

    def _client(self, db: int) -> redis.Redis:
        if db not in self._clients:
            self._clients[db] = redis.Redis.from_url(self._db_url(db))
        return self._clients[db]

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def env(self, **overrides: str) -> dict[str, str]:
        return {
            **self.base.service_env(),
            "CANCELQ_ACCOUNTS_FILE": str(self.worker_accounts_file),
            "CANCELQ_METRICS_PORT": "0",
            "CANCELQ_CONFIRM_DEADLINE_S": "0",
            "CANCELQ_LOG_LEVEL": "WARNING",
            "CANCELQ_NOT_FOUND_RECHECK_S": "0",
            "CANCELQ_SHUTDOWN_GRACE_S": "1",
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            # the simulator's CA: cancelq's setting, and requests' variable for the baselines
            **(
                {"CANCELQ_HTTP_CA_BUNDLE": self.ca_file, "REQUESTS_CA_BUNDLE": self.ca_file}
                if self.ca_file
                else {}
            ),
            **overrides,
        }

    def reset(self, *, rate_limits: bool = True, batch_counts_items: bool = True) -> None:
        """Empty Redis, fresh simulator (no orders, records, faults): before a worker set.
        Standby sets' databases are theirs and left alone."""
        self.redis.flushdb()
        self.redis.config_resetstat()
        self.reset_sim(rate_limits=rate_limits, batch_counts_items=batch_counts_items)

    def reset_sim(self, *, rate_limits: bool = True, batch_counts_items: bool = True) -> None:
        """Fresh simulator (no orders, records, faults), Redis left alone.

        Between two phases run by the same worker set: their queue is drained, and Redis is
        not flushed under running workers, whose state there (lanes, claims) is theirs.
        ``rate_limits=False`` disables the simulator's limiter *and* raises its advertised
        limits: it sends ``X-Bapi-Limit`` even when disabled, and cancelq obeys the lower of
        its own and the exchange's limit, so a disabled limiter alone still binds at 20/s.
        """
        self.sim.admin.reset(faults=True)
        admin = self.sim.admin
        admin.configure_rate_limits(enabled=rate_limits, batch_counts_items=batch_counts_items)
        for endpoint in ("order/cancel", "order/cancel-batch"):
            for category, default in (("spot", 20), ("linear", 10)):
                limit = default if rate_limits else UNBOUND_LIMIT
                admin.set_rate_limit(endpoint, limit, category=category)

    @contextlib.contextmanager
    def workers(
        self, system: str, count: int, pool_args: Sequence[str], **env: str
    ) -> Iterator[WorkerSet]:
        """A ready set of ``count`` processes of ``system``; killed and Redis flushed on exit.

        A standby set started for the same arguments is adopted (thawed, and the harness's
        ``redis`` switched to its database for the block). Before yielding, every other
        standby set is waited for and frozen, so no start-up overlaps what the block measures.
        Killed, not stopped gracefully: the run is over when the block ends, and a graceful
        stop cost 1-2 s per set, about a fifth of a quick run's time.
        """
        standby = self._standby.pop(SetSpec.of(system, count, pool_args, **env), None)
        ws = standby.ws if standby else self._spawn(system, count, pool_args, env)
        db = standby.db if standby else 0
        try:
            ws.wait_ready()
            self._freeze_standby()
            if standby:
                ws.signal_all(signal.SIGCONT)
                self.redis = self._client(db)
            yield ws
        finally:
            ws.kill()
            # leftovers of a bounded run must not leak into the next scenario
            self.redis.flushdb()
            self.redis = self._client(0)

    def another_set(
        self, system: str, count: int, pool_args: Sequence[str], **env: str
    ) -> WorkerSet:
        """A ready set beside the one ``workers`` runs, on the same database (a second pod,
        to kill): the caller kills it; ``workers``' block flushes what it leaves."""
        return self._spawn(system, count, pool_args, env).wait_ready()

    @contextlib.contextmanager
    def standby(self, specs: Sequence[SetSpec]) -> Iterator[None]:
        """Start baseline sets now, for ``workers`` calls later in the block; killed on exit.

        Why: a start-up is ~1 s of single-threaded CPU, so on 2 cores two at once take the time
        of one. Each standby set consumes its own Redis database, which nothing is pushed to
        until its ``workers`` call, and the next ``workers`` call waits for them and freezes
        them (SIGSTOP) before it yields: a waiting set takes neither cancels nor CPU from the
        set being measured. Celery baselines only: cancelq's leases and timers are not meant
        to be frozen.
        """
        free = [db for db in STANDBY_DBS if db not in {s.db for s in self._standby.values()}]
        if len(specs) > len(free) or len(set(specs)) < len(specs):
            raise ValueError("standby specs must be distinct and at most one per free database")
        try:
            for spec, db in zip(specs, free, strict=False):
                if spec.system == "cancelq" or spec in self._standby:
                    raise ValueError(f"cannot stand by {spec}")
                env = {**dict(spec.env), "CANCELQ_REDIS_URL": self._db_url(db)}
                ws = self._spawn(spec.system, spec.count, spec.pool_args, env, "standby")
                self._standby[spec] = _Standby(ws, db)
            yield
        finally:
            self._drop_standby(specs)

    def _spawn(
        self,
        system: str,
        count: int,
        pool_args: Sequence[str],
        env: Mapping[str, str],
        kind: str = "set",
    ) -> WorkerSet:
        self._sets += 1
        tag = f"{system}-{self._sets}-{kind}"
        return WorkerSet(
            system, count, pool_args, env=self.env(**env), workdir=self.workdir, tag=tag
        )

    def _freeze_standby(self) -> None:
        for standby in self._standby.values():
            if not standby.frozen:
                standby.ws.wait_ready()
                standby.ws.signal_all(signal.SIGSTOP)
                standby.ws.wait_stopped()
                standby.frozen = True

    def _drop_standby(self, specs: Sequence[SetSpec] | None = None) -> None:
        """Kill the standby sets of ``specs`` not adopted (all with None), flush their dbs."""
        for spec in list(self._standby) if specs is None else specs:
            standby = self._standby.pop(spec, None)
            if standby is not None:
                standby.ws.kill()
                with contextlib.suppress(redis.RedisError):
                    self._client(standby.db).flushdb()
